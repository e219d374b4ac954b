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
    let ns = (!args.all_namespaces).then(|| args.conn.namespace_or(&cluster));
    let sel = Selectors {
        labels: args.selector.clone(),
        fields: args.field_selector.clone(),
    };
    let mut queries = Vec::new();
    // `deploy,rs,pods`: several types, each printed in turn, as kubectl does.
    for kind in args.kind.split(',') {
        queries.push(Query {
            cluster: &cluster,
            res: cluster.discovery.for_name(kind)?,
            ns: ns.clone(),
            sel: sel.clone(),
            output: args.output,
        });
    }
    if args.watch {
        let [q] = queries.as_mut_slice() else {
            anyhow::bail!("watch is only supported on one resource type at a time");
        };
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
        return watch(q).await;
    }
    let mut found = Vec::new();
    for q in &queries {
        found.push(fetch(q, &args.names).await?);
    }
    let errors: Vec<ClientError> = found
        .iter_mut()
        .flat_map(|f| std::mem::take(&mut f.errors))
        .collect();
    match found.as_mut_slice() {
        [one] => print_one_type(&queries[0], one, !args.names.is_empty(), errors.is_empty()),
        several => print_several_types(&queries, several),
    }
    if errors.is_empty() {
        return Ok(());
    }
    for e in errors {
        eprintln!("{}", super::render(&e.into()));
    }
    Err(Reported.into())
}

/// What one resource type yields: a `Table` (merged over the names asked for) or the
/// objects, and an error for each name that was not found.
#[derive(Default)]
struct Found {
    table: Option<Value>,
    objects: Vec<Value>,
    errors: Vec<ClientError>,
}

async fn fetch(q: &Query<'_>, names: &[String]) -> anyhow::Result<Found> {
    let mut found = Found::default();
    if names.is_empty() {
        if q.is_table() {
            found.table = Some(q.cluster.list_table(q.res, q.ns(), &q.sel).await?);
        } else {
            let list = q.cluster.list(q.res, q.ns(), &q.sel).await?;
            found.objects = list["items"].as_array().cloned().unwrap_or_default();
        }
        return Ok(found);
    }
    // Like kubectl: what is found is printed, then an error for each name that is not.
    for name in names {
        let got = if q.is_table() {
            q.cluster.get_table(q.res, q.ns(), name).await
        } else {
            q.cluster.get(q.res, q.ns(), name).await
        };
        match got {
            Ok(v) if q.is_table() => match &mut found.table {
                None => found.table = Some(v),
                Some(table) => {
                    let rows = v["rows"].as_array().cloned().unwrap_or_default();
                    if let Some(all) = table["rows"].as_array_mut() {
                        all.extend(rows);
                    }
                }
            },
            Ok(v) => found.objects.push(v),
            Err(e) => found.errors.push(e),
        }
    }
    Ok(found)
}

/// One type, as before kubectl learnt several: a listing prints a `List` (or nothing found),
/// a single name found prints the object itself.
fn print_one_type(q: &Query<'_>, found: &mut Found, by_name: bool, complete: bool) {
    if let Some(table) = &found.table {
        return print_table(q, table);
    }
    let mut objects = std::mem::take(&mut found.objects);
    match objects.len() {
        0 if !by_name && q.output == Some(Output::Name) => q.nothing_found(),
        0 if by_name => {}
        1 if by_name && complete => print!("{}", q.print_object(objects.remove(0), true)),
        _ => print_objects(q, objects),
    }
}

/// kubectl's output for several types: a table per type that has rows, names prefixed by
/// their type (`deployment.apps/echo`), a blank line between tables; or one `List`.
fn print_several_types(queries: &[Query<'_>], found: &mut [Found]) {
    if queries[0].is_table() {
        let mut printed = false;
        for (q, f) in queries.iter().zip(found.iter_mut()) {
            let Some(table) = f.table.as_mut() else {
                continue;
            };
            for row in table["rows"].as_array_mut().into_iter().flatten() {
                if let Some(name) = row["cells"][0].as_str() {
                    row["cells"][0] = Value::String(format!("{}/{name}", q.res.kind_ref()));
                }
            }
            let rows = printer::table_rows(table, q.table_options());
            if rows.is_empty() {
                continue;
            }
            if printed {
                println!();
            }
            print_table(q, table);
            printed = true;
        }
        if !printed {
            queries[0].nothing_found();
        }
        return;
    }
    let typed: Vec<Value> = queries
        .iter()
        .zip(found.iter_mut())
        .flat_map(|(q, f)| {
            std::mem::take(&mut f.objects)
                .into_iter()
                .map(|o| printer::with_type(q.res, o))
        })
        .collect();
    match queries[0].output {
        Some(Output::Name) => {
            for obj in &typed {
                let res = queries
                    .iter()
                    .find(|q| obj["kind"] == q.res.kind.as_str())
                    .map(|q| q.res)
                    .unwrap_or(queries[0].res);
                println!("{}", printer::name(res, obj));
            }
        }
        Some(Output::Json) => print!(
            "{}",
            printer::to_json(&printer::list(queries[0].res, typed))
        ),
        _ => print!(
            "{}",
            printer::to_yaml(&printer::list(queries[0].res, typed))
        ),
    }
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
