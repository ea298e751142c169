//! Who the caller is, once the snapshot's own tables have spoken: a key they do not hold is
//! looked up through `keys_redis` when configured (one `HGET` on a cold cache), and otherwise
//! follows `identity.unknown_key`.

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::{Caller, Resolved};
use crate::identity::Rejection;
use crate::state::Generation;

pub async fn caller(
    generation: &Generation,
    resolved: Resolved,
    client: Option<IpAddr>,
) -> Result<Caller, Rejection> {
    let snapshot = &generation.snapshot;
    match resolved {
        Resolved::Caller(c) => Ok(c),
        Resolved::Rejected(why) => Err(why),
        Resolved::Unknown(digest) => match &generation.remote_keys {
            Some(remote) => match remote
                .resolve(snapshot, &generation.limiter, &digest)
                .await?
            {
                Some(entry) => Ok(Caller::Key(Arc::new(entry))),
                None => snapshot.unknown_key(client),
            },
            None => snapshot.unknown_key(client),
        },
    }
}
