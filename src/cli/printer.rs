//! Output the way kubectl prints it: Go's `text/tabwriter` column layout (kubectl's tables
//! and `describe` both go through it), server-side `Table`s, and `-o json|yaml|name`.

use serde_json::{Map, Value};

use super::discovery::ApiResource;

/// A subset of Go's `text/tabwriter` (left-aligned, space padding): each line is a list of
/// cells; every cell but a line's last is a column cell. A column's width is decided per
/// *block* of consecutive lines that have a cell in it, which is why `describe` aligns
/// `Name:` with `Namespace:` but not with the nested container fields after `Containers:`.
pub struct TabWriter {
    min_width: usize,
    padding: usize,
    /// kubectl's fork of tabwriter remembers widths across flushes (`RememberWidths`), so a
    /// `get -w` row printed later lines up with the header printed first.
    remembered: Option<Vec<usize>>,
}

impl TabWriter {
    /// kubectl's table printer: `tabwriter.NewWriter(out, 6, 4, 3, ' ', RememberWidths)`.
    pub fn table() -> Self {
        TabWriter {
            min_width: 6,
            padding: 3,
            remembered: Some(Vec::new()),
        }
    }

    /// kubectl's describers: `tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)`.
    pub fn describe() -> Self {
        TabWriter {
            min_width: 0,
            padding: 2,
            remembered: None,
        }
    }

    /// Lays out `text` (lines of tab-separated cells) as one flush of the writer.
    pub fn format(&mut self, text: &str) -> String {
        let lines: Vec<Vec<&str>> = text
            .split_terminator('\n')
            .map(|l| l.split('\t').collect())
            .collect();
        let mut out = String::new();
        let mut widths = Vec::new();
        self.format_block(&lines, &mut widths, &mut out);
        out
    }

    /// Go's `Writer.format`: walks column `widths.len()` over `lines`, recursing into each
    /// block of lines that has a cell in that column.
    fn format_block(&mut self, lines: &[Vec<&str>], widths: &mut Vec<usize>, out: &mut String) {
        let column = widths.len();
        let mut start = 0;
        let mut i = 0;
        while i < lines.len() {
            if column + 1 >= lines[i].len() {
                i += 1;
                continue;
            }
            self.write_lines(&lines[start..i], widths, out);
            start = i;
            let mut width = self.min_width;
            while i < lines.len() && column + 1 < lines[i].len() {
                width = width.max(lines[i][column].chars().count() + self.padding);
                i += 1;
            }
            if let Some(remembered) = self.remembered.as_mut() {
                if remembered.len() <= column {
                    remembered.resize(column + 1, 0);
                }
                width = width.max(remembered[column]);
                remembered[column] = width;
            }
            widths.push(width);
            self.format_block(&lines[start..i], widths, out);
            widths.pop();
            start = i;
        }
        self.write_lines(&lines[start..], widths, out);
    }

    fn write_lines(&self, lines: &[Vec<&str>], widths: &[usize], out: &mut String) {
        for line in lines {
            for (j, cell) in line.iter().enumerate() {
                out.push_str(cell);
                if let Some(w) = widths.get(j).filter(|_| j + 1 < line.len()) {
                    let pad = w.saturating_sub(cell.chars().count());
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        }
    }
}

/// How a server `Table` is turned into text.
#[derive(Debug, Clone, Copy, Default)]
pub struct TableOptions {
    /// `-o wide`: also the columns of priority > 0.
    pub wide: bool,
    /// `-A`: a NAMESPACE column first, read from each row's object metadata.
    pub with_namespace: bool,
}

/// The header line of `table` (tab-separated, upper-case, like kubectl's).
pub fn table_header(table: &Value, opts: TableOptions) -> String {
    let mut cells: Vec<String> = Vec::new();
    if opts.with_namespace {
        cells.push("NAMESPACE".into());
    }
    for (_, def) in visible_columns(table, opts) {
        cells.push(def["name"].as_str().unwrap_or_default().to_uppercase());
    }
    cells.join("\t") + "\n"
}

/// The rows of `table`, one tab-separated line each.
pub fn table_rows(table: &Value, opts: TableOptions) -> String {
    let columns: Vec<usize> = visible_columns(table, opts).map(|(i, _)| i).collect();
    let mut out = String::new();
    for row in table["rows"].as_array().into_iter().flatten() {
        let mut cells: Vec<String> = Vec::new();
        if opts.with_namespace {
            let ns = row.pointer("/object/metadata/namespace");
            cells.push(ns.and_then(Value::as_str).unwrap_or_default().into());
        }
        for &i in &columns {
            cells.push(cell_text(&row["cells"][i]));
        }
        out.push_str(&cells.join("\t"));
        out.push('\n');
    }
    out
}

fn visible_columns(table: &Value, opts: TableOptions) -> impl Iterator<Item = (usize, &Value)> {
    table["columnDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter(move |(_, d)| opts.wide || d["priority"].as_i64().unwrap_or(0) == 0)
}

/// Go's `fmt.Fprint` of a JSON-decoded cell.
fn cell_text(cell: &Value) -> String {
    match cell {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Objects as kubectl prints them: keys sorted (kubectl goes through Go maps), JSON
/// indented by four spaces.
pub fn to_json(v: &Value) -> String {
    let sorted = sort_keys(v);
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(&sorted, &mut ser).expect("a Value always serializes");
    String::from_utf8(buf).expect("JSON is UTF-8") + "\n"
}

pub fn to_yaml(v: &Value) -> String {
    serde_yaml::to_string(&sort_keys(v)).expect("a Value always serializes")
}

pub fn sort_keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sort_keys(&m[k])))
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sort_keys).collect()),
        other => other.clone(),
    }
}

/// A `List` of `items` like `kubectl get -o json|yaml` prints for several objects; items
/// get their `apiVersion`/`kind` back (list responses leave them out).
pub fn list(res: &ApiResource, items: Vec<Value>) -> Value {
    let items: Vec<Value> = items.into_iter().map(|o| with_type(res, o)).collect();
    serde_json::json!({
        "apiVersion": "v1",
        "items": items,
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    })
}

pub fn with_type(res: &ApiResource, mut obj: Value) -> Value {
    if let Some(m) = obj.as_object_mut() {
        m.entry("apiVersion")
            .or_insert_with(|| Value::String(res.api_version()));
        m.entry("kind")
            .or_insert_with(|| Value::String(res.kind.clone()));
    }
    obj
}

/// `-o name`: `pod/hello`, `runtimeclass.node.k8s.io/wasmtime`.
pub fn name(res: &ApiResource, obj: &Value) -> String {
    format!(
        "{}/{}",
        res.kind_ref(),
        obj.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_columns_are_padded_like_kubectl() {
        let mut w = TabWriter::table();
        let text = w.format("NAME\tREADY\tSTATUS\tRESTARTS\tAGE\nhello\t0/1\tCompleted\t0\t5s\n");
        assert_eq!(
            text,
            "NAME    READY   STATUS      RESTARTS   AGE\nhello   0/1     Completed   0          5s\n"
        );
        // A later flush keeps the widths (get -w), even for shorter cells.
        assert_eq!(
            w.format("a\t1/1\tRunning\t0\t6s\n"),
            "a       1/1     Running     0          6s\n"
        );
    }

    #[test]
    fn describe_aligns_blocks_of_consecutive_lines() {
        let mut w = TabWriter::describe();
        let text =
            w.format("Name:\thello\nNamespace:\tdefault\nContainers:\n  c:\n    Image:\tx\n");
        assert_eq!(
            text,
            "Name:       hello\nNamespace:  default\nContainers:\n  c:\n    Image:  x\n"
        );
    }

    #[test]
    fn tables_hide_wide_columns_and_add_namespaces() {
        let t = json!({
            "columnDefinitions": [{"name": "Name", "priority": 0}, {"name": "Node", "priority": 1}],
            "rows": [{"cells": ["a", "n1"], "object": {"metadata": {"namespace": "ns"}}}],
        });
        let narrow = TableOptions::default();
        assert_eq!(table_header(&t, narrow), "NAME\n");
        assert_eq!(table_rows(&t, narrow), "a\n");
        let all = TableOptions {
            wide: true,
            with_namespace: true,
        };
        assert_eq!(table_header(&t, all), "NAMESPACE\tNAME\tNODE\n");
        assert_eq!(table_rows(&t, all), "ns\ta\tn1\n");
    }

    #[test]
    fn json_and_yaml_sort_keys() {
        let v = json!({"b": 1, "a": {"d": [1], "c": null}});
        assert_eq!(
            to_json(&v),
            "{\n    \"a\": {\n        \"c\": null,\n        \"d\": [\n            1\n        ]\n    },\n    \"b\": 1\n}\n"
        );
        assert_eq!(to_yaml(&v), "a:\n  c: null\n  d:\n  - 1\nb: 1\n");
    }
}
