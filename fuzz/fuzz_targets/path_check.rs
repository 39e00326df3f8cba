//! The path check never panics, and a path it accepts is one the provider reads the same way:
//! no percent-encoding, no `;` parameters or `\` separators, no dot or empty segments; the
//! upstream path keeps it intact.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::proxy::request::{check_path, upstream_path};

fuzz_target!(|path: &str| {
    if check_path(path).is_ok() {
        assert!(path.starts_with('/'));
        assert!(!path.contains(['%', ';', '\\']));
        if path != "/" {
            assert!(path[1..]
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".."));
        }
        let upstream = upstream_path("/base", path, None);
        assert!(upstream.starts_with("/base"));
        assert!(upstream.ends_with(path.strip_prefix("/v1").unwrap_or(path)));
    }
});
