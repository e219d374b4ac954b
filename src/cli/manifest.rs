//! Manifests for `apply -f` and `delete -f`: files, directories and stdin, split into YAML
//! documents the way kubectl's YAML reader splits them, each remembered with the file and
//! line it starts on so that every error can point at it.

use std::path::{Path, PathBuf};

use serde::Deserialize as _;

use super::discovery::{ApiResource, Discovery};
use serde_json::Value;
use thiserror::Error;

/// How kubectl names standard input in messages (`error when creating "STDIN"`).
pub const STDIN: &str = "STDIN";

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("{file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    /// Line and column count from the start of the file, not of the document.
    #[error("{file}:{line}:{column}: {message}")]
    Yaml {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}:{line}: the document is not an object")]
    NotAnObject { file: String, line: usize },
    #[error("error validating \"{file}\" (document at line {line}): {missing} not set")]
    MissingType {
        file: String,
        line: usize,
        missing: String,
    },
    #[error("no objects passed to {0}")]
    Empty(&'static str),
    /// Boxed: a document is large, and every result of this module carries the error.
    #[error(
        "resource mapping not found for name: \"{}\" namespace: \"{}\" from \"{}\" \
         (document at line {}): no matches for kind \"{}\" in version \"{}\"",
        .0.name(), .0.namespace().unwrap_or_default(), .0.file, .0.line, .0.kind(), .0.api_version()
    )]
    UnknownKind(Box<Document>),
    #[error(
        "error validating \"{file}\" (document at line {line}): resource name may not be empty"
    )]
    MissingName { file: String, line: usize },
}

/// One object read from a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The path as given, or [`STDIN`].
    pub file: String,
    /// The 1-based line of the file where the document starts.
    pub line: usize,
    pub object: Value,
}

impl Document {
    pub fn api_version(&self) -> &str {
        self.object["apiVersion"].as_str().unwrap_or_default()
    }

    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
    }
}

/// Where `doc` is written: its resource, and its namespace (the document's, else
/// `default_ns`; `None` for cluster-scoped kinds).
pub fn resolve<'d>(
    doc: &Document,
    discovery: &'d Discovery,
    default_ns: &str,
) -> Result<(&'d ApiResource, Option<String>), ManifestError> {
    let res = discovery
        .for_kind(doc.api_version(), doc.kind())
        .ok_or_else(|| ManifestError::UnknownKind(Box::new(doc.clone())))?;
    if doc.name().is_empty() {
        return Err(ManifestError::MissingName {
            file: doc.file.clone(),
            line: doc.line,
        });
    }
    let namespace = res
        .namespaced
        .then(|| doc.namespace().unwrap_or(default_ns).to_string());
    Ok((res, namespace))
}

/// Reads every document of every `-f` argument, in order. `verb` names the command in the
/// error for an empty input, as kubectl does.
pub fn read_all(args: &[String], verb: &'static str) -> Result<Vec<Document>, ManifestError> {
    let mut docs = Vec::new();
    for arg in args {
        for (file, text) in sources(arg)? {
            docs.extend(parse(&file, &text)?);
        }
    }
    if docs.is_empty() {
        return Err(ManifestError::Empty(verb));
    }
    Ok(docs)
}

/// The (name, text) of each input `arg` stands for: stdin, one file, or a directory's
/// `*.yaml`, `*.yml` and `*.json` files in sorted order (not recursive, like kubectl).
fn sources(arg: &str) -> Result<Vec<(String, String)>, ManifestError> {
    let read_err = |file: &str| {
        let file = file.to_string();
        move |source| ManifestError::Read { file, source }
    };
    if arg == "-" {
        let text = std::io::read_to_string(std::io::stdin()).map_err(read_err(STDIN))?;
        return Ok(vec![(STDIN.to_string(), text)]);
    }
    let path = Path::new(arg);
    if !path.is_dir() {
        let text = std::fs::read_to_string(path).map_err(read_err(arg))?;
        return Ok(vec![(arg.to_string(), text)]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(read_err(arg))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let file = p.display().to_string();
            let text = std::fs::read_to_string(&p).map_err(read_err(&file))?;
            Ok((file, text))
        })
        .collect()
}

/// Splits `text` into documents and parses each. A separator is a line that is `---`
/// followed only by whitespace, as in apimachinery's `YAMLReader`; JSON is YAML too.
/// Empty documents are skipped; `kind: List` documents stand for their items.
pub fn parse(file: &str, text: &str) -> Result<Vec<Document>, ManifestError> {
    let mut docs = Vec::new();
    let mut chunk = String::new();
    let mut chunk_start = 1;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.starts_with("---") && line[3..].trim().is_empty() {
            parse_chunk(file, &chunk, chunk_start, &mut docs)?;
            chunk.clear();
            chunk_start = i + 2;
        } else {
            chunk.push_str(line);
        }
    }
    parse_chunk(file, &chunk, chunk_start, &mut docs)?;
    Ok(docs)
}

fn parse_chunk(
    file: &str,
    chunk: &str,
    first_line: usize,
    docs: &mut Vec<Document>,
) -> Result<(), ManifestError> {
    // The line the user sees the document begin on: its first line with content.
    let Some(offset) = chunk.lines().position(|l| {
        let l = l.trim();
        !l.is_empty() && !l.starts_with('#')
    }) else {
        return Ok(());
    };
    let line = first_line + offset;
    // Blank lines in front of the document make the parser's positions (in the error's
    // location and inside its message) count from the start of the file.
    let padded = "\n".repeat(first_line - 1) + chunk;
    let object = Value::deserialize(serde_yaml::Deserializer::from_str(&padded)).map_err(|e| {
        let (line, column) = e.location().map_or((line, 1), |l| (l.line(), l.column()));
        ManifestError::Yaml {
            file: file.to_string(),
            line,
            column,
            message: e
                .to_string()
                .replacen(&format!(" at line {line} column {column}"), "", 1),
        }
    })?;
    match object {
        Value::Null => Ok(()),
        Value::Object(_) => {
            let doc = Document {
                file: file.to_string(),
                line,
                object,
            };
            match doc.object["items"].as_array() {
                Some(items) if doc.kind().ends_with("List") => {
                    for item in items {
                        docs.push(typed(Document {
                            object: item.clone(),
                            ..doc.clone()
                        })?);
                    }
                }
                _ => docs.push(typed(doc)?),
            }
            Ok(())
        }
        _ => Err(ManifestError::NotAnObject {
            file: file.to_string(),
            line,
        }),
    }
}

/// Checks that the document says what it is.
fn typed(doc: Document) -> Result<Document, ManifestError> {
    let missing: Vec<&str> = [("apiVersion", doc.api_version()), ("kind", doc.kind())]
        .into_iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(k, _)| k)
        .collect();
    if missing.is_empty() {
        return Ok(doc);
    }
    Err(ManifestError::MissingType {
        file: doc.file,
        line: doc.line,
        missing: missing.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_remember_their_file_line() {
        let text = "# leading comment\napiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n\n# a\n---   \napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n";
        let docs = parse("f.yaml", text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].line, docs[0].name()), (2, "a"));
        assert_eq!((docs[1].line, docs[1].kind()), (9, "ConfigMap"));
    }

    #[test]
    fn yaml_errors_count_lines_from_the_start_of_the_file() {
        let text =
            "apiVersion: v1\nkind: Pod\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: [x\n";
        let err = parse("f.yaml", text).unwrap_err();
        let ManifestError::Yaml { line, message, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(*line, 8, "{err}");
        assert!(!message.contains(" at line 8 "), "{err}");
        assert!(err.to_string().starts_with("f.yaml:"), "{err}");
    }

    #[test]
    fn lists_and_json_and_missing_kinds() {
        let list = r#"{"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b"}}]}"#;
        let docs = parse("l.json", list).unwrap();
        assert_eq!(
            docs.iter().map(|d| d.kind()).collect::<Vec<_>>(),
            ["ConfigMap", "Secret"]
        );
        assert_eq!(docs[1].object["metadata"], json!({"name": "b"}));
        let err = parse("x.yaml", "\nmetadata: {name: a}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "error validating \"x.yaml\" (document at line 2): apiVersion, kind not set"
        );
        assert!(matches!(
            parse("x.yaml", "- a\n"),
            Err(ManifestError::NotAnObject { line: 1, .. })
        ));
    }

    #[test]
    fn documents_resolve_to_resources_and_namespaces() {
        let discovery = Discovery::from_lists(vec![serde_json::from_value(json!({
            "groupVersion": "v1", "resources": [
                {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "verbs": []},
                {"name": "nodes", "singularName": "node", "namespaced": false, "kind": "Node", "verbs": []},
            ]}))
        .unwrap()]);
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n\
            apiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: x}\n---\n\
            apiVersion: v1\nkind: Node\nmetadata: {name: n, namespace: ignored}\n---\n\
            apiVersion: v2\nkind: Pod\nmetadata: {name: c}\n---\n\
            apiVersion: v1\nkind: Pod\nmetadata: {}\n";
        let docs = parse("f.yaml", text).unwrap();
        let ns =
            |i: usize| resolve(&docs[i], &discovery, "dflt").map(|(r, ns)| (r.plural.clone(), ns));
        assert_eq!(ns(0).unwrap(), ("pods".into(), Some("dflt".into())));
        assert_eq!(ns(1).unwrap(), ("pods".into(), Some("x".into())));
        assert_eq!(ns(2).unwrap(), ("nodes".into(), None));
        assert_eq!(
            ns(3).unwrap_err().to_string(),
            "resource mapping not found for name: \"c\" namespace: \"\" from \"f.yaml\" \
             (document at line 13): no matches for kind \"Pod\" in version \"v2\""
        );
        assert_eq!(
            ns(4).unwrap_err().to_string(),
            "error validating \"f.yaml\" (document at line 17): resource name may not be empty"
        );
    }
}
