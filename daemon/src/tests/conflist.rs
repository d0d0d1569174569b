use super::*;
use std::io::Read;
use std::os::unix::fs::MetadataExt;

/// A private directory for one test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("weftd-conflist-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, content).unwrap();
        path
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const SOCKET: &str = "/run/weft/weftd.sock";

fn conflist_in(dir: &Scratch, content: &str) -> Conflist {
    Conflist {
        path: dir.0.join("05-weft.conflist"),
        content: content.as_bytes().to_vec(),
    }
}

#[test]
fn install_writes_0644_through_a_rename_and_leaves_no_temporary() {
    let dir = Scratch::new("write");
    let conflist = conflist_in(&dir, "{\"new\": true}\n");
    let old = dir.file("05-weft.conflist", "{\"old\": true}\n");
    // A reader that opened the old file keeps reading it whole: the new content arrives
    // as a new inode under the same name, never by rewriting the old one in place.
    let mut reader = fs::File::open(&old).unwrap();
    let old_inode = fs::metadata(&old).unwrap().ino();

    assert_eq!(conflist.install().unwrap(), Install::Written);

    let mut seen = String::new();
    reader.read_to_string(&mut seen).unwrap();
    assert_eq!(seen, "{\"old\": true}\n");
    let meta = fs::metadata(&conflist.path).unwrap();
    assert_ne!(meta.ino(), old_inode, "rewritten in place");
    assert_eq!(meta.mode() & 0o7777, 0o644);
    assert_eq!(fs::read(&conflist.path).unwrap(), conflist.content);
    assert_eq!(dir.names(), vec!["05-weft.conflist"]);
}

#[test]
fn identical_content_is_not_rewritten() {
    let dir = Scratch::new("same");
    let conflist = conflist_in(&dir, "{}\n");
    assert_eq!(conflist.install().unwrap(), Install::Written);
    let inode = fs::metadata(&conflist.path).unwrap().ino();
    assert_eq!(conflist.install().unwrap(), Install::Unchanged);
    assert_eq!(fs::metadata(&conflist.path).unwrap().ino(), inode);
}

#[test]
fn a_deleted_or_changed_conflist_is_restored() {
    let dir = Scratch::new("restore");
    let conflist = conflist_in(&dir, "{\"cniVersion\": \"1.1.0\"}\n");
    conflist.install().unwrap();
    fs::remove_file(&conflist.path).unwrap();
    assert_eq!(conflist.install().unwrap(), Install::Written);
    assert_eq!(fs::read(&conflist.path).unwrap(), conflist.content);
    fs::write(&conflist.path, "{\"edited\": 1}").unwrap();
    assert_eq!(conflist.install().unwrap(), Install::Written);
    assert_eq!(fs::read(&conflist.path).unwrap(), conflist.content);
}

#[test]
fn a_stale_temporary_from_a_crash_is_overwritten_and_a_missing_directory_made() {
    let dir = Scratch::new("stale");
    dir.file(".05-weft.conflist.weftd-tmp", &"x".repeat(4096));
    let conflist = conflist_in(&dir, "{}\n");
    conflist.install().unwrap();
    assert_eq!(fs::read(&conflist.path).unwrap(), b"{}\n");
    assert_eq!(dir.names(), vec!["05-weft.conflist"]);

    let nested = Conflist {
        path: dir.0.join("net.d/05-weft.conflist"),
        content: b"{}\n".to_vec(),
    };
    assert_eq!(nested.install().unwrap(), Install::Written);
}

#[test]
fn a_failed_write_names_the_flag_and_path() {
    let dir = Scratch::new("fail");
    let blocker = dir.file("not-a-dir", "");
    let conflist = Conflist {
        path: blocker.join("05-weft.conflist"),
        content: b"{}\n".to_vec(),
    };
    let e = conflist.install().unwrap_err().to_string();
    assert!(
        e.starts_with("--cni-conflist ") && e.contains(&conflist.path.display().to_string()),
        "{e}"
    );
}

#[test]
fn without_a_template_weft_alone_on_the_socket_is_written() {
    let dir = Scratch::new("default");
    let path = dir.0.join("05-weft.conflist");
    let socket = Path::new("/var/run/weft/other.sock");
    let conflist = Conflist::from_flags(path, None, socket).unwrap();
    let value: Value = serde_json::from_slice(&conflist.content).unwrap();
    assert_eq!(value["cniVersion"], DEFAULT_CNI_VERSION);
    assert_eq!(value["name"], DEFAULT_NETWORK_NAME);
    assert_eq!(
        value["plugins"],
        json!([{"type": "weft", "socket": "/var/run/weft/other.sock",
            "capabilities": {"io.kubernetes.cri.pod-annotations": true}}])
    );
    check_template(&conflist.content, socket).unwrap();
    assert!(asks_for_pod_annotations(&conflist.content));
}

#[test]
fn a_template_asks_for_pod_annotations_only_when_its_weft_entry_declares_them() {
    let with = |weft_entry: &str| {
        let text = format!(
            r#"{{"cniVersion":"1.1.0","name":"k8s","plugins":[{weft_entry},{{"type":"portmap","capabilities":{{"io.kubernetes.cri.pod-annotations":true}}}}]}}"#
        );
        asks_for_pod_annotations(text.as_bytes())
    };
    assert!(with(
        r#"{"type":"weft","capabilities":{"io.kubernetes.cri.pod-annotations":true}}"#
    ));
    assert!(!with(r#"{"type":"weft"}"#));
    assert!(!with(
        r#"{"type":"weft","capabilities":{"io.kubernetes.cri.pod-annotations":false}}"#
    ));
    assert!(!with(
        r#"{"type":"weft","capabilities":{"io.kubernetes.cri.pod-annotations":"true"}}"#
    ));
}

#[test]
fn a_template_is_written_byte_for_byte() {
    let dir = Scratch::new("template");
    let text = "{\"cniVersion\":\"1.0.0\",\"name\":\"k8s\",\"plugins\":[{\"type\":\"weft\",\"socket\":\"/run/weft/weftd.sock\"},{\"type\":\"portmap\",\"capabilities\":{\"portMappings\":true}}]}";
    let template = dir.file("conflist.json", text);
    let conflist = Conflist::from_flags(
        dir.0.join("05-weft.conflist"),
        Some(&template),
        Path::new(SOCKET),
    )
    .unwrap();
    assert_eq!(conflist.content, text.as_bytes());
}

#[test]
fn bad_templates_are_refused_naming_flag_path_and_problem() {
    let dir = Scratch::new("bad");
    let cases = [
        ("{\"cniVersion\": ", "not JSON"),
        ("{\"name\":\"k8s\",\"plugins\":[{\"type\":\"weft\"}]}", "no 'cniVersion'"),
        ("{\"cniVersion\":\"1.1.0\",\"plugins\":[{\"type\":\"weft\"}]}", "no 'name'"),
        ("{\"cniVersion\":1,\"name\":\"k8s\",\"plugins\":[{\"type\":\"weft\"}]}", "'cniVersion' is not"),
        ("{\"cniVersion\":\"1.1.0\",\"name\":\"k8s\"}", "no 'plugins'"),
        ("{\"cniVersion\":\"1.1.0\",\"name\":\"k8s\",\"plugins\":{}}", "'plugins' is not an array"),
        ("{\"cniVersion\":\"1.1.0\",\"name\":\"k8s\",\"plugins\":[]}", "'plugins' is empty"),
        (
            "{\"cniVersion\":\"1.1.0\",\"name\":\"k8s\",\"plugins\":[{\"type\":\"portmap\"},{\"type\":\"weft\"}]}",
            "plugins[0].type is \"portmap\"",
        ),
        ("{\"cniVersion\":\"1.1.0\",\"name\":\"k8s\",\"plugins\":[{}]}", "plugins[0].type is missing"),
        (
            "{\"cniVersion\":\"1.1.0\",\"name\":\"k8s\",\"plugins\":[{\"type\":\"weft\",\"socket\":\"/run/other.sock\"}]}",
            "plugins[0].socket is '/run/other.sock' but --socket is '/run/weft/weftd.sock'",
        ),
    ];
    for (text, problem) in cases {
        let template = dir.file("conflist.json", text);
        let e = Conflist::from_flags(
            dir.0.join("05-weft.conflist"),
            Some(&template),
            Path::new(SOCKET),
        )
        .unwrap_err()
        .to_string();
        let named = format!("--cni-conflist-template: '{}': ", template.display());
        assert!(e.starts_with(&named) && e.contains(problem), "{text}: {e}");
    }
    // The plugin's default socket counts when the entry names none.
    let template = dir.file(
        "conflist.json",
        "{\"cniVersion\":\"1.1.0\",\"name\":\"k8s\",\"plugins\":[{\"type\":\"weft\"}]}",
    );
    let path = dir.0.join("05-weft.conflist");
    Conflist::from_flags(path.clone(), Some(&template), Path::new(SOCKET)).unwrap();
    let e = Conflist::from_flags(path, Some(&template), Path::new("/run/x.sock"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("plugins[0].socket is '/run/weft/weftd.sock'"),
        "{e}"
    );

    let missing = dir.0.join("missing.json");
    let e = Conflist::from_flags(dir.0.join("a.conflist"), Some(&missing), Path::new(SOCKET))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&missing.display().to_string()), "{e}");
}

#[test]
fn conflist_paths_a_runtime_would_not_load_as_a_list_are_refused() {
    let dir = Scratch::new("paths");
    let socket = Path::new(SOCKET);
    for (path, problem) in [
        (
            PathBuf::from("net.d/05-weft.conflist"),
            "not an absolute path",
        ),
        (dir.0.join("05-weft.conf"), "does not end in .conflist"),
        (dir.0.join("05-weft.json"), "does not end in .conflist"),
        (dir.0.join("05-weft"), "does not end in .conflist"),
    ] {
        let e = Conflist::from_flags(path.clone(), None, socket)
            .unwrap_err()
            .to_string();
        let named = format!("--cni-conflist: '{}' ", path.display());
        assert!(e.starts_with(&named) && e.contains(problem), "{e}");
    }
    let directory = dir.0.join("dir.conflist");
    fs::create_dir(&directory).unwrap();
    let e = Conflist::from_flags(directory, None, socket)
        .unwrap_err()
        .to_string();
    assert!(e.contains("is a directory"), "{e}");
}
