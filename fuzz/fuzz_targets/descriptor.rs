//! `*.websocket` descriptors and handler sources: any bytes give a descriptor or an error that says
//! what is wrong, never a panic; the per-event import rewrite keeps one line per line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_script::Descriptor;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Descriptor::parse("fuzz.websocket", text) {
        Ok(descriptor) => {
            assert!(!descriptor.endpoint.is_empty() && !descriptor.endpoint.contains('/'));
            let path = descriptor.handler_path();
            assert!(!path.starts_with('/') && !path.split('/').any(|part| part == ".." || part == "."), "{path}");
        }
        Err(reason) => assert!(!reason.is_empty()),
    }
    if let Ok(rewritten) = switchboard_script::fuzzing::imports_to_require(text) {
        assert_eq!(rewritten.lines().count(), text.lines().count());
    }
});
