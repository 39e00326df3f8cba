//! The translators never panic on any request, answer or stream; every request they accept
//! reads strictly as a request of the other API (the provider can act on it), and a stream's
//! translation does not depend on how it is cut into chunks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::translate::anthropic::MessagesRequest;
use warden::translate::openai::ChatRequest;
use warden::translate::{self, Direction, Stream};

fuzz_target!(|input: (bool, u16, u8, &[u8])| {
    let (to_messages, status, cut, body) = input;
    let direction = if to_messages {
        Direction::ChatToMessages
    } else {
        Direction::MessagesToChat
    };
    if let Ok(translated) = translate::request(direction, body, 1024) {
        let valid = match direction {
            Direction::ChatToMessages => {
                serde_json::from_slice::<MessagesRequest>(&translated.body).is_ok()
            }
            Direction::MessagesToChat => {
                serde_json::from_slice::<ChatRequest>(&translated.body).is_ok()
            }
        };
        assert!(valid, "an accepted request must be valid for the other API");
    }
    let answer = translate::answer(direction, status, body, 0);
    assert!(serde_json::from_slice::<serde_json::Value>(&answer).is_ok());
    let mut whole = Stream::new(direction, true, 0);
    let mut expected = Vec::new();
    whole.feed(body, &mut expected);
    whole.finish(&mut expected);
    let mut pieces = Stream::new(direction, true, 0);
    let mut seen = Vec::new();
    for piece in body.chunks(usize::from(cut).max(1)) {
        pieces.feed(piece, &mut seen);
    }
    pieces.finish(&mut seen);
    assert_eq!(seen, expected);
});
