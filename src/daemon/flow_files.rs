//! Flows from files (`flows.dir/*.yaml`, `*.yml`, `*.json`): each file is one flow document
//! naming its `agent_idn` and `flow_idn`, or a flat subscription export (rows that name agent
//! and flow, like `naf-events.yaml`). All files load or none: the first bad one is refused with
//! its path and field, and the flows in force stay.

use std::path::{Path, PathBuf};

use crate::domain::{Flow, Idn};
use crate::wire::{FlowDoc, FlowDocError, SubscriptionExport};

#[derive(Debug, thiserror::Error)]
#[error("{path}: {error}")]
pub struct FlowFileError {
    pub path: PathBuf,
    pub error: FlowDocError,
}

/// Every flow of every file in `dir`, in file-name order, with its file. A missing directory
/// has no flows.
pub fn load_dir(account: &Idn, dir: &Path) -> Result<Vec<(Flow, FlowDoc, PathBuf)>, FlowFileError> {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(FlowFileError {
                path: dir.to_owned(),
                error: FlowDocError {
                    field: "flows.dir".into(),
                    reason: e.to_string(),
                },
            })
        }
    };
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let fail = |error| FlowFileError {
            path: path.clone(),
            error,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            fail(FlowDocError {
                field: "file".into(),
                reason: e.to_string(),
            })
        })?;
        out.extend(
            parse(account, &text)
                .map_err(fail)?
                .into_iter()
                .map(|(f, doc)| (f, doc, path.clone())),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for (f, _, _) in &out {
        if !seen.insert((f.agent.clone(), f.flow.clone())) {
            return Err(FlowFileError {
                path: dir.to_owned(),
                error: FlowDocError {
                    field: "flow_idn".into(),
                    reason: format!("{}/{} is defined twice", f.agent, f.flow),
                },
            });
        }
    }
    Ok(out)
}

/// One file's flows.
pub fn parse(account: &Idn, text: &str) -> Result<Vec<(Flow, FlowDoc)>, FlowDocError> {
    crate::wire::flow_bounds::check(text)?;
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| FlowDocError {
        field: "document".into(),
        reason: e.to_string(),
    })?;
    let is_export = value
        .get("events")
        .and_then(|e| e.as_sequence())
        .and_then(|s| s.first())
        .is_some_and(|row| row.get("agent_idn").is_some());
    if is_export {
        let export = SubscriptionExport::from_yaml(text)?;
        let flows = export.to_flows(account)?;
        Ok(flows
            .into_iter()
            .map(|f| {
                let doc = to_doc(&f);
                (f, doc)
            })
            .collect())
    } else {
        let doc = FlowDoc::from_yaml(text)?;
        let agent = doc.agent_idn.clone().ok_or_else(|| FlowDocError {
            field: "agent_idn".into(),
            reason: "required in a flow file".into(),
        })?;
        let flow = doc.flow_idn.clone().ok_or_else(|| FlowDocError {
            field: "flow_idn".into(),
            reason: "required in a flow file".into(),
        })?;
        let f = doc.to_domain(account, &agent, &flow)?;
        Ok(vec![(f, doc)])
    }
}

/// The flow document of a flow (what `GET /v1/flows/...` shows).
pub fn to_doc(f: &Flow) -> FlowDoc {
    crate::wire::flow_doc::FlowDoc::from_domain(f)
}
