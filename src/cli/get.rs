//! `wkube get`: the server's `Table` printed like kubectl prints it (the server decides the
//! columns, as it does for kubectl), or the objects as YAML, JSON or names; `-w` goes on
//! with a line per change.

use std::io::Write as _;

use clap::{Args, ValueEnum};
use futures::TryStreamExt as _;
use kube::core::WatchEvent;
use serde_json::Value;

use super::client::{ClientError, Cluster, Selectors};
use super::discovery::ApiResource;
use super::printer::{self, TabWriter, TableOptions};
use super::{Connection, Reported};

#[derive(Args)]
pub struct GetArgs {
    /// The resource type, as kubectl takes it: `pods`, `pod`, `po`, `cm`, `ns`, ...
    kind: String,
    /// Only these objects.
    names: Vec<String>,
    #[arg(short = 'o', long, value_enum)]
    output: Option<Output>,
    /// Label selector, e.g. `app=hello,tier!=db`.
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Field selector, e.g. `status.phase=Running`.
    #[arg(long)]
    field_selector: Option<String>,
    /// Every namespace (adds a NAMESPACE column).
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// After the current state, print a line per change.
    #[arg(short = 'w', long)]
    watch: bool,
    #[command(flatten)]
    conn: Connection,
}

#[derive(ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
enum Output {
    Wide,
    Yaml,
    Json,
    Name,
}

/// One `get` invocation, resolved.
struct Query<'a> {
    cluster: &'a Cluster,
    res: &'a ApiResource,
    /// `None`: every namespace.
    ns: Option<String>,
    sel: Selectors,
    output: Option<Output>,
}

impl Query<'_> {
    fn table_options(&self) -> TableOptions {
        TableOptions {
            wide: self.output == Some(Output::Wide),
            with_namespace: self.ns.is_none() && self.res.namespaced,
        }
    }

    fn is_table(&self) -> bool {
        matches!(self.output, None | Some(Output::Wide))
    }

    fn ns(&self) -> Option<&str> {
        self.ns.as_deref()
    }

    /// Prints one object (`-o yaml|json|name`); YAML documents are separated as a stream.
    fn print_object(&self, obj: Value, first: bool) -> String {
        match self.output {
            Some(Output::Name) => printer::name(self.res, &obj) + "\n",
            Some(Output::Json) => printer::to_json(&printer::with_type(self.res, obj)),
            _ if first => printer::to_yaml(&printer::with_type(self.res, obj)),
            _ => "---\n".to_string() + &printer::to_yaml(&printer::with_type(self.res, obj)),
        }
    }

    /// kubectl's message for an empty result, on stderr.
    fn nothing_found(&self) {
        match self.ns() {
            Some(ns) if self.res.namespaced => {
                eprintln!("No resources found in {ns} namespace.")
            }
            _ => eprintln!("No resources found"),
        }
    }
}

pub async fn run(args: GetArgs) -> anyhow::Result<()> {
    let cluster = args.conn.connect().await?;
    let res = cluster.discovery.for_name(&args.kind)?;
    let mut q = Query {
        cluster: &cluster,
        res,
        ns: (!args.all_namespaces).then(|| args.conn.namespace_or(&cluster)),
        sel: Selectors {
            labels: args.selector.clone(),
            fields: args.field_selector.clone(),
        },
        output: args.output,
    };
    if args.watch {
        match args.names.as_slice() {
            [] => {}
            [name] => {
                let by_name = format!("metadata.name={name}");
                q.sel.fields = Some(match q.sel.fields.take() {
                    Some(f) => format!("{f},{by_name}"),
                    None => by_name,
                });
            }
            more => anyhow::bail!(
                "watch is only supported on individual resources and resource collections, \
                 but {} resources were found",
                more.len()
            ),
        }
        return watch(&q).await;
    }
    if args.names.is_empty() {
        return list(&q).await;
    }
    by_name(&q, &args.names).await
}

async fn list(q: &Query<'_>) -> anyhow::Result<()> {
    if q.is_table() {
        let table = q.cluster.list_table(q.res, q.ns(), &q.sel).await?;
        print_table(q, &table);
        return Ok(());
    }
    let list = q.cluster.list(q.res, q.ns(), &q.sel).await?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() && q.output == Some(Output::Name) {
        q.nothing_found();
        return Ok(());
    }
    print_objects(q, items);
    Ok(())
}

/// Like kubectl: what is found is printed, then an error for each name that is not.
async fn by_name(q: &Query<'_>, names: &[String]) -> anyhow::Result<()> {
    let mut found = Vec::new();
    let mut errors: Vec<ClientError> = Vec::new();
    for name in names {
        let got = if q.is_table() {
            q.cluster.get_table(q.res, q.ns(), name).await
        } else {
            q.cluster.get(q.res, q.ns(), name).await
        };
        match got {
            Ok(v) => found.push(v),
            Err(e) => errors.push(e),
        }
    }
    if q.is_table() {
        if let Some(mut table) = found.first().cloned() {
            let rows: Vec<Value> = found
                .iter()
                .flat_map(|t| t["rows"].as_array().cloned().unwrap_or_default())
                .collect();
            table["rows"] = Value::Array(rows);
            print_table(q, &table);
        }
    } else if found.len() == 1 && errors.is_empty() {
        print!("{}", q.print_object(found.remove(0), true));
    } else if !found.is_empty() {
        print_objects(q, found);
    }
    if errors.is_empty() {
        return Ok(());
    }
    for e in errors {
        eprintln!("{}", super::render(&e.into()));
    }
    Err(Reported.into())
}

fn print_table(q: &Query<'_>, table: &Value) {
    let rows = printer::table_rows(table, q.table_options());
    if rows.is_empty() {
        q.nothing_found();
        return;
    }
    let text = printer::table_header(table, q.table_options()) + &rows;
    print!("{}", TabWriter::table().format(&text));
}

/// Several objects: a `List` for YAML and JSON, a line each for names.
fn print_objects(q: &Query<'_>, items: Vec<Value>) {
    match q.output {
        Some(Output::Name) => {
            for item in items {
                print!("{}", q.print_object(item, true));
            }
        }
        Some(Output::Json) => print!("{}", printer::to_json(&printer::list(q.res, items))),
        _ => print!("{}", printer::to_yaml(&printer::list(q.res, items))),
    }
}

/// Prints a watch's output: Table rows under one header printed before the first row, or
/// a stream of objects.
struct WatchPrinter {
    tw: TabWriter,
    header_printed: bool,
    objects_printed: bool,
}

impl WatchPrinter {
    fn emit(&mut self, q: &Query<'_>, v: Value) -> std::io::Result<()> {
        let mut out = std::io::stdout();
        if q.is_table() {
            let opts = q.table_options();
            let rows = printer::table_rows(&v, opts);
            if rows.is_empty() {
                return Ok(());
            }
            let mut text = String::new();
            if !self.header_printed {
                text = printer::table_header(&v, opts);
                self.header_printed = true;
            }
            write!(out, "{}", self.tw.format(&(text + &rows)))?;
        } else {
            write!(out, "{}", q.print_object(v, !self.objects_printed))?;
            self.objects_printed = true;
        }
        out.flush()
    }
}

/// The current state first, then one line (or object) per event, from the list's
/// resourceVersion on so that no change in between is missed.
async fn watch(q: &Query<'_>) -> anyhow::Result<()> {
    let mut printer = WatchPrinter {
        tw: TabWriter::table(),
        header_printed: false,
        objects_printed: false,
    };
    let initial = if q.is_table() {
        q.cluster.list_table(q.res, q.ns(), &q.sel).await?
    } else {
        q.cluster.list(q.res, q.ns(), &q.sel).await?
    };
    let mut rv = initial["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if q.is_table() {
        printer.emit(q, initial)?;
    } else {
        for item in initial["items"].as_array().cloned().unwrap_or_default() {
            printer.emit(q, item)?;
        }
    }
    if !printer.header_printed && !printer.objects_printed {
        q.nothing_found();
    }
    loop {
        let events = q
            .cluster
            .watch(q.res, q.ns(), &q.sel, &rv, q.is_table())
            .await?;
        futures::pin_mut!(events);
        while let Some(event) = events.try_next().await? {
            let obj = match event {
                WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o,
                WatchEvent::Bookmark(b) => {
                    rv = b.metadata.resource_version;
                    continue;
                }
                WatchEvent::Error(status) => {
                    return Err(ClientError::from(kube::Error::Api(status)).into())
                }
            };
            // A Table carries the row's resourceVersion in its own metadata.
            if let Some(version) = obj["metadata"]["resourceVersion"].as_str() {
                rv = version.to_string();
            }
            printer.emit(q, obj)?;
        }
        // The server closes a watch after its timeout; go on from the last version seen.
    }
}
