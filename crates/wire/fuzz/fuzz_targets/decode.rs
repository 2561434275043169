#![no_main]
//! Any bytes as a frame payload: the decoder answers a message or an error,
//! never a panic.

use libfuzzer_sys::fuzz_target;
use pchat_wire::frame::decode;
use pchat_wire::message::{ClientMsg, ServerMsg};

fuzz_target!(|data: &[u8]| {
    let _ = decode::<ClientMsg>(data);
    let _ = decode::<ServerMsg>(data);
});
