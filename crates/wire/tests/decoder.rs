//! The decoder against arbitrary and mutated input: it never panics, and
//! every message it can encode decodes to itself. (The same decoder is the
//! cargo-fuzz target in crates/wire/fuzz.)

use pchat_domain::{Command, Envelope};
use pchat_wire::frame;
use pchat_wire::message::*;
use proptest::prelude::*;

fn samples() -> Vec<ClientMsg> {
    vec![
        ClientMsg::Hello {
            version: 1,
            client: "chat1".into(),
            proof: "ab".repeat(32),
        },
        ClientMsg::Request {
            id: 7,
            req: Request::Submit {
                envelope: Envelope {
                    origin: "chat1".into(),
                    command: Command::PostMessage {
                        actor: 2,
                        room: 1,
                        body: "hello \u{1F600}".into(),
                        client_msg_id: "c1".into(),
                        alert: false,
                    },
                },
            },
        },
        ClientMsg::Request {
            id: 8,
            req: Request::Read {
                query: Query::Messages {
                    room: 1,
                    page: pchat_store::Page::Before { seq: 10, limit: 5 },
                },
            },
        },
        ClientMsg::Request {
            id: 9,
            req: Request::Subscribe { after: 42 },
        },
    ]
}

#[test]
fn every_message_round_trips() {
    for m in samples() {
        let bytes = frame::encode(&m).unwrap();
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        assert_eq!(len, bytes.len() - 4);
        assert_eq!(frame::decode::<ClientMsg>(&bytes[4..]).unwrap(), m);
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = frame::decode::<ClientMsg>(&bytes);
        let _ = frame::decode::<ServerMsg>(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic_and_truncated_ones_are_refused(
        which in 0usize..4,
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
        cut in any::<prop::sample::Index>(),
    ) {
        let m = &samples()[which];
        let bytes = frame::encode(m).unwrap()[4..].to_vec();
        let mut flipped = bytes.clone();
        let i = at.index(flipped.len());
        flipped[i] ^= 1 << bit;
        let _ = frame::decode::<ClientMsg>(&flipped);
        let truncated = &bytes[..cut.index(bytes.len())];
        prop_assert!(frame::decode::<ClientMsg>(truncated).is_err());
    }

    #[test]
    fn reading_frames_from_garbage_ends_in_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let r = rt.block_on(async {
            let mut src: &[u8] = &bytes;
            frame::read::<ClientMsg>(&mut src).await
        });
        // A 4-byte length then a whole valid document is astronomically
        // unlikely from random bytes; anything else must be an error.
        prop_assert!(r.is_err());
    }
}
