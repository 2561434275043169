//! Turning stored values into API views: names of senders, rooms as the
//! caller sees them.

use pchat_api::{AddInView, MessageView, RoomView};
use pchat_domain::permissions::{self, Caller};
use pchat_domain::{Access, AddIn, AddInId, Category, CategoryId, Message, RoomInfo, User, UserId};
use pchat_store::{ChatStore, RoomRoles, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// User id → name. Users are never renamed or removed here, so entries
/// never go stale; the hub adds new users as they are created.
pub struct NameCache {
    store: Arc<dyn ChatStore>,
    names: RwLock<HashMap<UserId, Arc<str>>>,
}

impl NameCache {
    pub fn new(store: Arc<dyn ChatStore>) -> Self {
        NameCache {
            store,
            names: RwLock::new(HashMap::new()),
        }
    }

    pub fn insert(&self, id: UserId, name: &str) {
        if let Ok(mut m) = self.names.write() {
            m.insert(id, name.into());
        }
    }

    pub async fn get(&self, id: UserId) -> Result<Arc<str>, StoreError> {
        if let Some(n) = self.names.read().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(n);
        }
        let name: Arc<str> = match self.store.user(id).await? {
            Some(u) => u.name.into(),
            None => format!("user{id}").into(),
        };
        self.insert(id, &name);
        Ok(name)
    }

    pub async fn message(&self, m: &Message) -> Result<MessageView, StoreError> {
        Ok(MessageView {
            room: m.room,
            seq: m.seq,
            sender: self.get(m.sender).await?.to_string(),
            sender_id: m.sender,
            body: m.body.clone(),
            ts: m.ts,
            client_msg_id: m.client_msg_id.clone(),
            alert: m.alert,
            replaced: m.replaced,
            file: m.file.as_ref().map(|f| pchat_api::FileView {
                name: f.name.clone(),
                size: f.size,
                content_type: f.content_type.clone(),
                sha256: f.sha256.clone(),
                url: format!("/api/v1/rooms/{}/files/{}", m.room, f.sha256),
            }),
        })
    }
}

pub fn caller(user: &User, access: Access) -> Caller {
    Caller {
        admin: user.admin,
        access,
    }
}

/// Categories and add-ins, read once per request to render rooms.
pub struct Directory {
    pub categories: HashMap<CategoryId, Category>,
    pub addins: HashMap<AddInId, AddIn>,
}

impl Directory {
    pub async fn load(store: &dyn ChatStore) -> Result<Directory, StoreError> {
        Ok(Directory {
            categories: store
                .categories()
                .await?
                .into_iter()
                .map(|c| (c.id, c))
                .collect(),
            addins: store
                .addins()
                .await?
                .into_iter()
                .map(|a| (a.id, a))
                .collect(),
        })
    }
}

pub fn room_view(
    room: RoomInfo,
    user: &User,
    access: Access,
    roles: Option<RoomRoles>,
    dir: &Directory,
) -> RoomView {
    let c = caller(user, access);
    let my_roles = pchat_domain::Role::ALL
        .iter()
        .filter(|r| access.has(**r))
        .map(|r| r.as_str().to_string())
        .collect();
    let can_read = permissions::can_read(&room, c);
    let can_post = permissions::can_post(&room, c);
    let roles = roles.filter(|_| can_read);
    let invitations_on = dir
        .categories
        .get(&room.category)
        .is_some_and(|cat| permissions::invitations_on(&room, cat));
    RoomView {
        id: room.id,
        invitations_on,
        invitations: room.invitations,
        addin: room
            .addin
            .and_then(|id| dir.addins.get(&id))
            .map(|a| AddInView {
                name: a.name.clone(),
                url: a.url.clone(),
            }),
        can_manage: permissions::can_manage(&room, c),
        can_join: permissions::can_join(&room, c),
        invited: access.invited,
        name: room.name,
        category: room.category,
        description: room.description,
        privacy: room.privacy,
        room_type: room.room_type,
        disabled: room.disabled,
        created_by: room.created_by,
        created_at: room.created_at,
        last_seq: room.last_seq,
        my_roles,
        can_read,
        can_post,
        members: roles.as_ref().map(|r| r.members.clone()),
        managers: roles.as_ref().map(|r| r.managers.clone()),
        presenters: roles.map(|r| r.presenters),
    }
}
