//! Who may find, read, post in, join, invite to and manage a room: the one
//! place these rules live.
//!
//! First the category: a caller it does not let in (not allowed, or denied,
//! directly or through any group) is refused everything, whatever their
//! roles; administrators bypass category lists. Then the room:
//!
//! | privacy | find                 | read      | post (Normal) |
//! |---------|----------------------|-----------|---------------|
//! | Open    | everyone             | everyone  | everyone      |
//! | Closed  | everyone             | members*  | members*      |
//! | Secret  | members*, invitees   | members*  | members*      |
//!
//! *members, managers and presenters, named directly or through a group. In
//! an Auditorium only presenters post. Administrators find and read every
//! room (they manage them) but post only where the rules let them. A disabled
//! room takes no posts and is read by no one but administrators; only its
//! managers and administrators still find it (to enable it again).

use crate::model::{Access, Category, Invitations, Privacy, RoomInfo, RoomType};

/// The caller as the permission rules see them.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub admin: bool,
    pub access: Access,
}

impl Caller {
    fn let_in(self) -> bool {
        self.admin || self.access.allowed
    }
}

pub fn can_find(room: &RoomInfo, caller: Caller) -> bool {
    if caller.admin {
        return true;
    }
    let a = caller.access;
    if !a.allowed {
        return false;
    }
    if room.disabled {
        return a.manager;
    }
    room.privacy != Privacy::Secret || a.any() || a.invited
}

pub fn can_read(room: &RoomInfo, caller: Caller) -> bool {
    caller.admin
        || (caller.access.allowed
            && !room.disabled
            && (room.privacy == Privacy::Open || caller.access.any()))
}

pub fn can_post(room: &RoomInfo, caller: Caller) -> bool {
    if room.disabled || !caller.let_in() {
        return false;
    }
    match room.room_type {
        RoomType::Auditorium => caller.access.presenter,
        RoomType::Normal => room.privacy == Privacy::Open || caller.access.any(),
    }
}

/// Edit the room's properties and lists (not its category), disable it.
pub fn can_manage(_room: &RoomInfo, caller: Caller) -> bool {
    caller.admin || (caller.access.allowed && caller.access.manager)
}

/// Become a member: of an Open room, or of a room one is invited to.
pub fn can_join(room: &RoomInfo, caller: Caller) -> bool {
    !room.disabled
        && !caller.access.member
        && caller.let_in()
        && (caller.admin || caller.access.invited || room.privacy == Privacy::Open)
}

/// Whether a room sends invitations: its setting inherits the category's,
/// and a category with invitations off turns them off for all its rooms.
pub fn invitations_on(room: &RoomInfo, category: &Category) -> bool {
    room.invitations == Invitations::Inherit && category.invitations
}

pub fn can_invite(room: &RoomInfo, category: &Category, caller: Caller) -> bool {
    invitations_on(room, category) && !room.disabled && can_manage(room, caller)
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
            invitations: Invitations::Inherit,
            addin: None,
        }
    }

    fn access(roles: &str, allowed: bool, invited: bool) -> Access {
        Access {
            member: roles.contains('m'),
            manager: roles.contains('g'),
            presenter: roles.contains('p'),
            allowed,
            invited,
        }
    }

    /// privacy × type × roles, for a caller the category lets in. Roles:
    /// m member, g manager, p presenter; A administrator.
    #[test]
    fn room_matrix_for_allowed_callers() {
        use Privacy::*;
        use RoomType::*;
        // (privacy, type, roles, admin, find, read, post, manage, join)
        let rows = [
            (Open, Normal, "", false, true, true, true, false, true),
            (Open, Normal, "m", false, true, true, true, false, false),
            (Open, Auditorium, "", false, true, true, false, false, true),
            (
                Open, Auditorium, "m", false, true, true, false, false, false,
            ),
            (Open, Auditorium, "p", false, true, true, true, false, true),
            (Closed, Normal, "", false, true, false, false, false, false),
            (Closed, Normal, "m", false, true, true, true, false, false),
            (Closed, Normal, "g", false, true, true, true, true, false),
            (Closed, Normal, "p", false, true, true, true, false, false),
            (Closed, Normal, "", true, true, true, false, true, true),
            (
                Closed, Auditorium, "m", false, true, true, false, false, false,
            ),
            (
                Closed, Auditorium, "g", false, true, true, false, true, false,
            ),
            (
                Closed, Auditorium, "p", false, true, true, true, false, false,
            ),
            (Secret, Normal, "", false, false, false, false, false, false),
            (Secret, Normal, "m", false, true, true, true, false, false),
            (Secret, Normal, "", true, true, true, false, true, true),
            (
                Secret, Auditorium, "m", false, true, true, false, false, false,
            ),
            (
                Secret, Auditorium, "p", false, true, true, true, false, false,
            ),
        ];
        for (privacy, room_type, roles, admin, find, read, post, manage, join) in rows {
            let r = room(privacy, room_type);
            let c = Caller {
                admin,
                access: access(roles, true, false),
            };
            let ctx = format!("{privacy:?} {room_type:?} roles '{roles}' admin {admin}");
            assert_eq!(can_find(&r, c), find, "find {ctx}");
            assert_eq!(can_read(&r, c), read, "read {ctx}");
            assert_eq!(can_post(&r, c), post, "post {ctx}");
            assert_eq!(can_manage(&r, c), manage, "manage {ctx}");
            assert_eq!(can_join(&r, c), join, "join {ctx}");
        }
    }

    #[test]
    fn the_category_wall_beats_every_role() {
        for privacy in [Privacy::Open, Privacy::Closed, Privacy::Secret] {
            let r = room(privacy, RoomType::Normal);
            let walled = Caller {
                admin: false,
                access: access("mgp", false, true),
            };
            assert!(!can_find(&r, walled), "{privacy:?}");
            assert!(!can_read(&r, walled));
            assert!(!can_post(&r, walled));
            assert!(!can_manage(&r, walled));
            assert!(!can_join(&r, walled));
            // Administrators bypass category lists.
            let admin = Caller {
                admin: true,
                access: access("m", false, false),
            };
            assert!(can_find(&r, admin) && can_read(&r, admin) && can_post(&r, admin));
        }
    }

    #[test]
    fn invitees_find_secret_rooms_and_join_them() {
        let r = room(Privacy::Secret, RoomType::Normal);
        let invitee = Caller {
            admin: false,
            access: access("", true, true),
        };
        assert!(can_find(&r, invitee));
        assert!(!can_read(&r, invitee));
        assert!(can_join(&r, invitee));
    }

    #[test]
    fn disabled_rooms_are_found_only_by_managers_and_take_no_posts() {
        let mut r = room(Privacy::Open, RoomType::Normal);
        r.disabled = true;
        let member = Caller {
            admin: false,
            access: access("mp", true, false),
        };
        let manager = Caller {
            admin: false,
            access: access("g", true, false),
        };
        let admin = Caller {
            admin: true,
            access: access("mgp", true, false),
        };
        assert!(!can_find(&r, member) && !can_read(&r, member) && !can_join(&r, member));
        assert!(can_find(&r, manager) && !can_read(&r, manager));
        assert!(can_manage(&r, manager));
        assert!(!can_post(&r, admin));
    }

    #[test]
    fn invitations_need_the_room_and_the_category() {
        let mut cat = Category {
            id: 1,
            name: "c".into(),
            description: String::new(),
            created_at: 0,
            file_upload: true,
            invitations: true,
            chat_history: true,
        };
        let mut r = room(Privacy::Closed, RoomType::Normal);
        let manager = Caller {
            admin: false,
            access: access("g", true, false),
        };
        let member = Caller {
            admin: false,
            access: access("m", true, false),
        };
        assert!(can_invite(&r, &cat, manager));
        assert!(!can_invite(&r, &cat, member));
        r.invitations = Invitations::False;
        assert!(!can_invite(&r, &cat, manager));
        r.invitations = Invitations::Inherit;
        cat.invitations = false;
        assert!(!can_invite(&r, &cat, manager));
    }
}
