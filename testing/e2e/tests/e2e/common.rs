//! Helpers shared by the test modules.

use canopy_e2e::{Cli, ControlPlane};
use serde_json::Value;

/// An enterprise control plane with an initialized admin CLI.
pub fn enterprise() -> (ControlPlane, Cli) {
    let cp = ControlPlane::start_enterprise();
    let admin = Cli::new(&cp);
    let init = admin.json(&["init-server"]);
    assert_eq!(init["user"], "admin", "init-server JSON: {init}");
    (cp, admin)
}

/// The `name` fields of a JSON array of objects.
pub fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("expected a JSON array, got {list}"))
        .iter()
        .map(|item| {
            item["name"]
                .as_str()
                .unwrap_or_else(|| panic!("item without a string `name`: {item}"))
                .to_owned()
        })
        .collect()
}

/// The object named `name` in a JSON array of objects.
pub fn find<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .and_then(|items| items.iter().find(|i| i["name"] == name))
        .unwrap_or_else(|| panic!("no item named {name:?} in {list}"))
}

/// The text of the first text content block of a CallToolResult.
pub fn first_text(result: &Value) -> &str {
    result["content"]
        .as_array()
        .and_then(|c| c.iter().find(|b| b["type"] == "text"))
        .and_then(|b| b["text"].as_str())
        .unwrap_or_else(|| panic!("CallToolResult without text content: {result}"))
}

/// A generated token from a `create ... -o json` answer.
pub fn access_token(created: &Value) -> String {
    created["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no generated access_token in {created}"))
        .to_owned()
}

/// The `revision` of a revoking/re-scoping command's JSON answer.
pub fn revision(answer: &Value) -> u64 {
    answer["revision"]
        .as_u64()
        .unwrap_or_else(|| panic!("no numeric `revision` in {answer}"))
}

/// An allow list as a sorted list of strings: it is a set, the order is not part of the contract.
pub fn allow_set(value: &Value) -> Vec<String> {
    let mut entries: Vec<String> = value
        .as_array()
        .unwrap_or_else(|| panic!("allowed_servers is not an array: {value}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("non-string entry in {value}"))
                .to_owned()
        })
        .collect();
    entries.sort();
    entries
}
