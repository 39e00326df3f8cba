//! `warden inject` on any text never panics, and injecting its own output changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::k8s::manifest::inject;
use warden::k8s::sidecar::Sidecar;

fuzz_target!(|text: &str| {
    let sidecar = Sidecar::default();
    if let Ok(once) = inject(text, &sidecar) {
        let twice = inject(&once.text, &sidecar).expect("Warden's own output is readable YAML");
        assert_eq!(twice.injected, 0);
        assert_eq!(twice.text, once.text);
    }
});
