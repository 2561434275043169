//! Who may find, read and post in a room: the one place these rules live.
//!
//! | privacy | find        | read                 | post (Normal)        |
//! |---------|-------------|----------------------|----------------------|
//! | Open    | everyone    | everyone             | everyone             |
//! | Closed  | everyone    | members*             | members*             |
//! | Secret  | members*    | members*             | members*             |
//!
//! *members, managers and presenters. In an Auditorium only presenters post.
//! Administrators find and read every room (they manage them) but post only
//! where the rules above let them. A disabled room accepts no posts.

use crate::model::{Access, Privacy, RoomInfo, RoomType};

/// The caller as the permission rules see them.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub admin: bool,
    pub access: Access,
}

pub fn can_find(room: &RoomInfo, caller: Caller) -> bool {
    caller.admin || room.privacy != Privacy::Secret || caller.access.any()
}

pub fn can_read(room: &RoomInfo, caller: Caller) -> bool {
    caller.admin || room.privacy == Privacy::Open || caller.access.any()
}

pub fn can_post(room: &RoomInfo, caller: Caller) -> bool {
    if room.disabled {
        return false;
    }
    match room.room_type {
        RoomType::Auditorium => caller.access.presenter,
        RoomType::Normal => room.privacy == Privacy::Open || caller.access.any(),
    }
}

pub fn can_manage(_room: &RoomInfo, caller: Caller) -> bool {
    caller.admin || caller.access.manager
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn room(privacy: Privacy, room_type: RoomType) -> RoomInfo {
        RoomInfo {
            id: 1,
            name: "r".into(),
            category: 1,
            description: String::new(),
            privacy,
            room_type,
            created_by: 1,
            created_at: 0,
            last_seq: 0,
            disabled: false,
        }
    }

    /// The whole matrix privacy × role × room type, spelled out.
    #[test]
    fn permission_matrix() {
        let none = Access::default();
        let member = Access {
            member: true,
            ..none
        };
        let manager = Access {
            manager: true,
            ..none
        };
        let presenter = Access {
            presenter: true,
            ..none
        };
        let c = |admin, access| Caller { admin, access };
        // (privacy, type, caller, find, read, post)
        let rows = [
            (
                Privacy::Open,
                RoomType::Normal,
                c(false, none),
                true,
                true,
                true,
            ),
            (
                Privacy::Open,
                RoomType::Normal,
                c(false, member),
                true,
                true,
                true,
            ),
            (
                Privacy::Open,
                RoomType::Auditorium,
                c(false, none),
                true,
                true,
                false,
            ),
            (
                Privacy::Open,
                RoomType::Auditorium,
                c(false, member),
                true,
                true,
                false,
            ),
            (
                Privacy::Open,
                RoomType::Auditorium,
                c(false, presenter),
                true,
                true,
                true,
            ),
            (
                Privacy::Closed,
                RoomType::Normal,
                c(false, none),
                true,
                false,
                false,
            ),
            (
                Privacy::Closed,
                RoomType::Normal,
                c(false, member),
                true,
                true,
                true,
            ),
            (
                Privacy::Closed,
                RoomType::Normal,
                c(false, manager),
                true,
                true,
                true,
            ),
            (
                Privacy::Closed,
                RoomType::Normal,
                c(false, presenter),
                true,
                true,
                true,
            ),
            (
                Privacy::Closed,
                RoomType::Normal,
                c(true, none),
                true,
                true,
                false,
            ),
            (
                Privacy::Closed,
                RoomType::Auditorium,
                c(false, member),
                true,
                true,
                false,
            ),
            (
                Privacy::Closed,
                RoomType::Auditorium,
                c(false, manager),
                true,
                true,
                false,
            ),
            (
                Privacy::Closed,
                RoomType::Auditorium,
                c(false, presenter),
                true,
                true,
                true,
            ),
            (
                Privacy::Secret,
                RoomType::Normal,
                c(false, none),
                false,
                false,
                false,
            ),
            (
                Privacy::Secret,
                RoomType::Normal,
                c(false, member),
                true,
                true,
                true,
            ),
            (
                Privacy::Secret,
                RoomType::Normal,
                c(true, none),
                true,
                true,
                false,
            ),
            (
                Privacy::Secret,
                RoomType::Auditorium,
                c(false, member),
                true,
                true,
                false,
            ),
            (
                Privacy::Secret,
                RoomType::Auditorium,
                c(false, presenter),
                true,
                true,
                true,
            ),
        ];
        for (privacy, room_type, caller, find, read, post) in rows {
            let r = room(privacy, room_type);
            let ctx = format!("{privacy:?} {room_type:?} {caller:?}");
            assert_eq!(can_find(&r, caller), find, "find {ctx}");
            assert_eq!(can_read(&r, caller), read, "read {ctx}");
            assert_eq!(can_post(&r, caller), post, "post {ctx}");
        }
    }

    #[test]
    fn disabled_room_takes_no_posts() {
        let mut r = room(Privacy::Open, RoomType::Normal);
        r.disabled = true;
        let presenter = Access {
            presenter: true,
            member: true,
            manager: true,
        };
        assert!(!can_post(
            &r,
            Caller {
                admin: true,
                access: presenter
            }
        ));
    }

    #[test]
    fn only_managers_and_admins_manage() {
        let r = room(Privacy::Closed, RoomType::Normal);
        let member = Access {
            member: true,
            ..Access::default()
        };
        let manager = Access {
            manager: true,
            ..Access::default()
        };
        assert!(!can_manage(
            &r,
            Caller {
                admin: false,
                access: member
            }
        ));
        assert!(can_manage(
            &r,
            Caller {
                admin: false,
                access: manager
            }
        ));
        assert!(can_manage(
            &r,
            Caller {
                admin: true,
                access: Access::default()
            }
        ));
    }
}
