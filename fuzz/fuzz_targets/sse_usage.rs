//! The usage meter never panics, and what it reads does not depend on how the stream is cut
//! into chunks (the network decides that, not the provider).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use warden::proxy::usage::UsageMeter;

fuzz_target!(|input: (u8, Vec<u16>, &[u8])| {
    let (kind, cuts, body) = input;
    let content_type: &[u8] = if kind % 2 == 0 {
        b"text/event-stream"
    } else {
        b"application/json"
    };
    let mut whole = UsageMeter::for_content_type(Some(content_type));
    whole.feed(&Bytes::copy_from_slice(body));
    let expected = whole.finish();

    let mut pieces = UsageMeter::for_content_type(Some(content_type));
    let mut at = 0;
    for cut in cuts {
        let end = (at + usize::from(cut) % 64 + 1).min(body.len());
        pieces.feed(&Bytes::copy_from_slice(&body[at..end]));
        at = end;
    }
    pieces.feed(&Bytes::copy_from_slice(&body[at..]));
    assert_eq!(pieces.finish(), expected);
});
