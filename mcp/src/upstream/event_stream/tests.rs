use super::*;

fn parse_in_chunks(input: &[u8], size: usize) -> Vec<Event> {
    let mut p = EventParser::default();
    let mut out = VecDeque::new();
    for c in input.chunks(size) {
        p.push(c, &mut out).expect("valid stream");
    }
    out.into_iter().collect()
}

#[test]
fn parses_events_with_every_line_ending_and_chunking() {
    let input = b": comment\r\nevent: endpoint\r\ndata: /messages?s=1\r\n\r\ndata: {\"a\":\ndata:1}\n\nid: 7\rdata: x\r\r";
    let expected = vec![
        Event {
            event: "endpoint".into(),
            data: "/messages?s=1".into(),
            id: None,
        },
        Event {
            event: "message".into(),
            data: "{\"a\":\n1}".into(),
            id: None,
        },
        Event {
            event: "message".into(),
            data: "x".into(),
            id: Some("7".into()),
        },
    ];
    for size in [1, 2, 3, 5, 7, 1000] {
        assert_eq!(parse_in_chunks(input, size), expected, "chunk size {size}");
    }
}

#[test]
fn event_without_data_is_not_dispatched() {
    assert!(parse_in_chunks(b"event: ping\n\n: keepalive\n\n", 4).is_empty());
}

#[test]
fn incomplete_event_is_held_back() {
    assert!(parse_in_chunks(b"data: partial\n", 3).is_empty());
}

#[test]
fn oversized_event_is_an_error() {
    let mut p = EventParser::default();
    let mut out = VecDeque::new();
    let big = vec![b'a'; 1024 * 1024];
    let mut res = p.push(b"data: ", &mut out);
    for _ in 0..17 {
        res = res.and_then(|_| p.push(&big, &mut out));
    }
    assert_eq!(res, Err(EventStreamError::TooLarge));
}
