//! The network configuration on the plugin's stdin, as the plugin parses it for every
//! command (`peek_version` for VERSION and error replies, `NetConf::parse` otherwise).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_fuzz::config::{peek_version, NetConf, SUPPORTED_VERSIONS};

fuzz_target!(|data: &[u8]| {
    let _ = peek_version(data);
    match NetConf::parse(data) {
        Ok(conf) => {
            assert!(SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()));
            assert!(conf.socket.is_absolute());
            if let Some(mac) = conf.runtime_mac {
                assert!(mac[0] & 1 == 0 && mac != [0; 6]);
            }
        }
        Err(e) => {
            // The error object the runtime gets must be JSON whatever the input held.
            let version = peek_version(data).unwrap_or_default();
            let object: serde_json::Value =
                serde_json::from_str(&e.to_json(&version, None)).expect("error object is JSON");
            assert_eq!(object["code"], e.code());
        }
    }
});
