//! Container log files in the CRI format that kubelet and containerd use, and the
//! reader behind `kubectl logs`.
//!
//! One record per line: `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>\n`.
//! `F` ends a logical line; `P` is a fragment whose line continues in the next
//! record of the same stream. As in containerd, a fragment is written when a line
//! exceeds [`MAX_RECORD_CONTENT`] bytes, and when the stream ends on an unterminated
//! line (so `kubectl logs` prints that last line without a newline).
//!
//! Deviation from kubelet, on purpose: `tail_lines` counts logical lines (fragments
//! joined), where kubelet counts records in the file.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};

/// containerd's default `max_container_log_line_size`: longer lines are split.
pub const MAX_RECORD_CONTENT: usize = 16 * 1024;

/// How often [`follow_log`] looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// `<root>/pods/<namespace>_<name>_<uid>/<container>/<restart>.log`, kubelet's layout.
pub fn container_log_path(
    root: &Path,
    namespace: &str,
    name: &str,
    uid: &str,
    container: &str,
    restart_count: u32,
) -> PathBuf {
    pod_log_dir(root, namespace, name, uid)
        .join(container)
        .join(format!("{restart_count}.log"))
}

/// The directory of a pod's container logs (a CRI sandbox's `log_directory`).
pub fn pod_log_dir(root: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    root.join("pods").join(format!("{namespace}_{name}_{uid}"))
}

/// Formats one CRI record. Timestamps are written like Go's `time.RFC3339Nano`
/// (trailing zeros of the fraction dropped), as containerd does.
pub fn format_record(ts: DateTime<Utc>, stream: Stream, partial: bool, content: &[u8]) -> Vec<u8> {
    let mut ts = ts.to_rfc3339_opts(SecondsFormat::Nanos, true);
    // "...05.120000000Z" -> "...05.12Z"; "...05.000000000Z" -> "...05Z".
    ts.pop();
    while ts.ends_with('0') {
        ts.pop();
    }
    if ts.ends_with('.') {
        ts.pop();
    }
    ts.push('Z');
    let mut out = Vec::with_capacity(ts.len() + content.len() + 12);
    out.extend_from_slice(ts.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
    out
}

/// The log of one container run, shared by its stdout and stderr. Cheap to clone;
/// all clones append to the same file.
///
/// Content is split into lines per stream; each record is appended with a single
/// `write` on an `O_APPEND` descriptor, so records from the two streams never mix
/// within a line and a concurrent reader sees whole records or nothing new (a
/// reader still treats a record without its `\n` as not yet written).
#[derive(Clone)]
pub struct LogWriter {
    inner: Arc<Mutex<WriterInner>>,
    path: Arc<PathBuf>,
}

struct WriterInner {
    file: File,
    /// The unterminated tail of each stream, waiting for its newline.
    pending: [Vec<u8>; 2],
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("path", &self.path)
            .finish()
    }
}

impl LogWriter {
    /// Opens (creating it and its directories) the log file at `path` for appending.
    pub fn create(path: &Path) -> Result<Self, LogError> {
        let err = |source| LogError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        Ok(LogWriter {
            inner: Arc::new(Mutex::new(WriterInner {
                file,
                pending: [Vec::new(), Vec::new()],
            })),
            path: Arc::new(path.to_owned()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A writer for one stream. Any number may exist; writers of the same stream
    /// share its pending partial line.
    pub fn stream(&self, stream: Stream) -> StreamWriter {
        StreamWriter {
            log: self.clone(),
            stream,
        }
    }

    /// Appends `data` to `stream`: writes every completed line as an `F` record and
    /// long unterminated content as `P` records of [`MAX_RECORD_CONTENT`] bytes.
    pub fn write_stream(&self, stream: Stream, data: &[u8]) -> io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let WriterInner { file, pending } = &mut *inner;
        let pending = &mut pending[stream.index()];
        let now = Utc::now();
        let mut rest = data;
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    pending.extend_from_slice(&rest[..nl]);
                    rest = &rest[nl + 1..];
                    // Like Go's bufio.ReadLine in containerd: "\r\n" ends a line too.
                    if pending.last() == Some(&b'\r') {
                        pending.pop();
                    }
                    flush_long(file, pending, stream, now)?;
                    file.write_all(&format_record(now, stream, false, pending))?;
                    pending.clear();
                }
                None => {
                    pending.extend_from_slice(rest);
                    rest = &[];
                    flush_long(file, pending, stream, now)?;
                }
            }
        }
        Ok(())
    }

    /// Ends both streams: an unterminated last line is written as a `P` record,
    /// which is how containerd records output that did not end in a newline. Call
    /// once the container has exited; later writes start new lines.
    pub fn close(&self) -> io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let WriterInner { file, pending } = &mut *inner;
        let now = Utc::now();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let pending = &mut pending[stream.index()];
            if !pending.is_empty() {
                file.write_all(&format_record(now, stream, true, pending))?;
                pending.clear();
            }
        }
        Ok(())
    }
}

/// Writes full-size `P` records while more than a record's worth is pending,
/// keeping at most [`MAX_RECORD_CONTENT`] bytes (the line may still end there).
fn flush_long(
    file: &mut File,
    pending: &mut Vec<u8>,
    stream: Stream,
    now: DateTime<Utc>,
) -> io::Result<()> {
    if pending.len() <= MAX_RECORD_CONTENT {
        return Ok(());
    }
    let mut start = 0;
    while pending.len() - start > MAX_RECORD_CONTENT {
        let chunk = &pending[start..start + MAX_RECORD_CONTENT];
        file.write_all(&format_record(now, stream, true, chunk))?;
        start += MAX_RECORD_CONTENT;
    }
    pending.drain(..start);
    Ok(())
}

/// One stream of a [`LogWriter`], as an [`io::Write`].
#[derive(Clone, Debug)]
pub struct StreamWriter {
    log: LogWriter,
    stream: Stream,
}

impl StreamWriter {
    pub fn stream(&self) -> Stream {
        self.stream
    }
}

impl Write for StreamWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.log.write_stream(self.stream, buf)?;
        Ok(buf.len())
    }

    /// Records are written as soon as they are complete; nothing is buffered in
    /// user space but partial lines, which must wait for their newline.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What `kubectl logs` can ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Only the last N logical lines.
    pub tail_lines: Option<usize>,
    /// Prefix each line with its timestamp (`RFC3339Nano`, fixed 9 digits, UTC).
    pub timestamps: bool,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<usize>,
    /// Only lines logged at or after this time.
    pub since: Option<DateTime<Utc>>,
}

/// One logical line: fragments of one stream joined.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LogLine {
    /// Time of the line's first record.
    ts: DateTime<Utc>,
    content: Vec<u8>,
    /// Ended by an `F` record (printed with a trailing newline).
    complete: bool,
}

/// Incremental parser of CRI records into logical lines.
#[derive(Default)]
struct Parser {
    /// Bytes after the last newline seen: a record still being written.
    unfinished: Vec<u8>,
    /// Per stream: the fragments of a line whose `F` has not arrived yet.
    partial: [Option<LogLine>; 2],
}

impl Parser {
    /// Feeds raw file bytes, appending each line completed by them to `out`.
    fn feed(&mut self, mut data: &[u8], out: &mut Vec<LogLine>) {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            if self.unfinished.is_empty() {
                self.record(&data[..nl], out);
            } else {
                let mut rec = std::mem::take(&mut self.unfinished);
                rec.extend_from_slice(&data[..nl]);
                self.record(&rec, out);
            }
            data = &data[nl + 1..];
        }
        self.unfinished.extend_from_slice(data);
    }

    fn record(&mut self, rec: &[u8], out: &mut Vec<LogLine>) {
        let Some((ts, stream, partial, content)) = parse_record(rec) else {
            // Not ours to fix: skip malformed records, as kubelet does.
            return;
        };
        let slot = &mut self.partial[stream.index()];
        let line = slot.get_or_insert_with(|| LogLine {
            ts,
            content: Vec::new(),
            complete: false,
        });
        line.content.extend_from_slice(content);
        if !partial {
            let mut line = slot.take().expect("just inserted");
            line.complete = true;
            out.push(line);
        }
    }

    /// The writer is done: fragments still waiting for their `F` are lines of
    /// their own, printed without a newline.
    fn finish(&mut self, out: &mut Vec<LogLine>) {
        let mut rest: Vec<LogLine> = self.partial.iter_mut().filter_map(Option::take).collect();
        rest.sort_by_key(|l| l.ts);
        out.extend(rest);
    }
}

fn parse_record(rec: &[u8]) -> Option<(DateTime<Utc>, Stream, bool, &[u8])> {
    let mut parts = rec.splitn(4, |&b| b == b' ');
    let ts = std::str::from_utf8(parts.next()?).ok()?;
    let ts = DateTime::parse_from_rfc3339(ts).ok()?.with_timezone(&Utc);
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"F" => false,
        b"P" => true,
        _ => return None,
    };
    // An empty line is written as "... F " and may have lost its trailing space.
    let content = parts.next().unwrap_or(&[]);
    Some((ts, stream, partial, content))
}

/// Applies `since`, `timestamps` and `limit_bytes` to lines, in order.
struct Renderer {
    opts: LogOptions,
    written: usize,
}

impl Renderer {
    fn new(opts: &LogOptions) -> Self {
        Renderer {
            opts: opts.clone(),
            written: 0,
        }
    }

    fn exhausted(&self) -> bool {
        self.opts.limit_bytes.is_some_and(|l| self.written >= l)
    }

    fn render(&mut self, lines: impl IntoIterator<Item = LogLine>, out: &mut Vec<u8>) {
        for line in lines {
            if self.exhausted() {
                return;
            }
            if self.opts.since.is_some_and(|since| line.ts < since) {
                continue;
            }
            let start = out.len();
            if self.opts.timestamps {
                out.extend_from_slice(
                    line.ts
                        .to_rfc3339_opts(SecondsFormat::Nanos, true)
                        .as_bytes(),
                );
                out.push(b' ');
            }
            out.extend_from_slice(&line.content);
            if line.complete {
                out.push(b'\n');
            }
            let mut n = out.len() - start;
            if let Some(limit) = self.opts.limit_bytes {
                let room = limit - self.written;
                if n > room {
                    out.truncate(start + room);
                    n = room;
                }
            }
            self.written += n;
        }
    }
}

fn keep_tail(lines: Vec<LogLine>, tail: Option<usize>) -> Vec<LogLine> {
    match tail {
        Some(n) if n < lines.len() => lines[lines.len() - n..].to_vec(),
        _ => lines,
    }
}

/// Reads a whole log file the way `kubectl logs` prints it. A missing file reads
/// as empty: the container may not have written anything yet.
pub fn read_log(path: &Path, opts: &LogOptions) -> Result<Vec<u8>, LogError> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(LogError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let mut parser = Parser::default();
    let mut lines = Vec::new();
    parser.feed(&data, &mut lines);
    parser.finish(&mut lines);
    let mut out = Vec::new();
    Renderer::new(opts).render(keep_tail(lines, opts.tail_lines), &mut out);
    Ok(out)
}

/// Streams a log file like `kubectl logs -f`: the existing content (after
/// `tail_lines`), then lines as they are appended, polling every 50 ms, until
/// `done` resolves (the container has exited); then whatever is left is read
/// and the stream ends. Also ends once `limit_bytes` have been sent.
///
/// A line is emitted when its `F` record is complete; an unterminated line only
/// when the stream ends. Log rotation is not followed (wkube does not rotate yet).
pub fn follow_log(
    path: PathBuf,
    opts: LogOptions,
    done: impl Future<Output = ()> + Send + 'static,
) -> impl futures::Stream<Item = Result<Bytes, LogError>> + Send + 'static {
    struct State {
        path: PathBuf,
        tail: Option<usize>,
        offset: u64,
        parser: Parser,
        renderer: Renderer,
        done: futures::future::BoxFuture<'static, ()>,
        /// `done` has resolved: the next read is the last.
        draining: bool,
        finished: bool,
    }

    let state = State {
        path,
        tail: opts.tail_lines,
        offset: 0,
        parser: Parser::default(),
        renderer: Renderer::new(&opts),
        done: Box::pin(done),
        draining: false,
        finished: false,
    };

    futures::stream::unfold(state, |mut st| async move {
        loop {
            if st.finished || st.renderer.exhausted() {
                return None;
            }
            let chunk = match read_from(&st.path, st.offset) {
                Ok(chunk) => chunk,
                Err(source) => {
                    st.finished = true;
                    let err = LogError::Io {
                        path: st.path.clone(),
                        source,
                    };
                    return Some((Err(err), st));
                }
            };
            st.offset += chunk.len() as u64;
            let mut lines = Vec::new();
            st.parser.feed(&chunk, &mut lines);
            if st.draining {
                st.parser.finish(&mut lines);
                st.finished = true;
            }
            if let Some(n) = st.tail.take() {
                // First read only: the tail applies to what existed when we started.
                lines = keep_tail(lines, Some(n));
            }
            let mut out = Vec::new();
            st.renderer.render(lines, &mut out);
            if !out.is_empty() {
                return Some((Ok(Bytes::from(out)), st));
            }
            if st.finished {
                return None;
            }
            tokio::select! {
                _ = &mut st.done => st.draining = true,
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
            }
        }
    })
}

/// Bytes of `path` from `offset` to its current end; nothing if it does not exist yet.
fn read_from(path: &Path, offset: u64) -> io::Result<Vec<u8>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

/// Keeps the last lines of a log in memory; handy for the pod worker's
/// termination message ("FallbackToLogsOnError" reads the last 80 lines / 2 KiB).
pub fn last_lines(path: &Path, lines: usize, max_bytes: usize) -> Result<String, LogError> {
    let out = read_log(
        path,
        &LogOptions {
            tail_lines: Some(lines),
            ..Default::default()
        },
    )?;
    let mut tail: VecDeque<u8> = out.into_iter().collect();
    while tail.len() > max_bytes {
        tail.pop_front();
    }
    Ok(String::from_utf8_lossy(tail.make_contiguous()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use futures::StreamExt;

    fn ts(secs: i64, nanos: u32) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, nanos).unwrap()
    }

    fn write_records(path: &Path, records: &[(DateTime<Utc>, Stream, bool, &str)]) {
        let mut data = Vec::new();
        for (t, s, p, c) in records {
            data.extend(format_record(*t, *s, *p, c.as_bytes()));
        }
        std::fs::write(path, data).unwrap();
    }

    fn read(path: &Path, opts: LogOptions) -> String {
        String::from_utf8(read_log(path, &opts).unwrap()).unwrap()
    }

    #[test]
    fn record_format_matches_containerd() {
        assert_eq!(
            format_record(ts(0, 120_000_000), Stream::Stdout, false, b"hello"),
            b"2023-11-14T22:13:20.12Z stdout F hello\n"
        );
        assert_eq!(
            format_record(ts(0, 0), Stream::Stderr, true, b"x y"),
            b"2023-11-14T22:13:20Z stderr P x y\n"
        );
        assert_eq!(
            format_record(ts(0, 1), Stream::Stdout, false, b""),
            b"2023-11-14T22:13:20.000000001Z stdout F \n"
        );
    }

    #[test]
    fn container_log_path_is_kubelet_layout() {
        assert_eq!(
            container_log_path(Path::new("/var/log"), "default", "web", "u-1", "app", 2),
            Path::new("/var/log/pods/default_web_u-1/app/2.log")
        );
    }

    #[test]
    fn writer_splits_lines_and_streams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/0.log");
        let log = LogWriter::create(&path).unwrap();
        let mut out = log.stream(Stream::Stdout);
        let mut err = log.stream(Stream::Stderr);
        out.write_all(b"one\ntw").unwrap();
        err.write_all(b"oops\r\n").unwrap();
        // A second handle on stdout continues the same pending line.
        log.stream(Stream::Stdout).write_all(b"o\n\nthree").unwrap();
        log.close().unwrap();

        let raw = std::fs::read_to_string(&path).unwrap();
        let kinds: Vec<(&str, &str, &str)> = raw
            .lines()
            .map(|l| {
                let mut p = l.splitn(4, ' ');
                p.next();
                (p.next().unwrap(), p.next().unwrap(), p.next().unwrap_or(""))
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("stdout", "F", "one"),
                ("stderr", "F", "oops"),
                ("stdout", "F", "two"),
                ("stdout", "F", ""),
                ("stdout", "P", "three"),
            ]
        );
        assert_eq!(
            read(&path, LogOptions::default()),
            "one\noops\ntwo\n\nthree"
        );
    }

    #[test]
    fn long_lines_are_split_and_joined_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let log = LogWriter::create(&path).unwrap();
        let long = "x".repeat(MAX_RECORD_CONTENT * 2 + 10);
        let mut out = log.stream(Stream::Stdout);
        // Written in small pieces so the split happens across writes.
        for chunk in long.as_bytes().chunks(1000) {
            out.write_all(chunk).unwrap();
        }
        out.write_all(b"\nshort\n").unwrap();

        let raw = std::fs::read_to_string(&path).unwrap();
        let tags: Vec<&str> = raw.lines().map(|l| l.split(' ').nth(2).unwrap()).collect();
        assert_eq!(tags, ["P", "P", "F", "F"]);
        assert!(raw.lines().all(|l| l.len() < MAX_RECORD_CONTENT + 64));
        assert_eq!(
            read(&path, LogOptions::default()),
            format!("{long}\nshort\n")
        );
        // A long line is one line for tail.
        let opts = LogOptions {
            tail_lines: Some(2),
            ..Default::default()
        };
        assert_eq!(read(&path, opts), format!("{long}\nshort\n"));
    }

    #[test]
    fn tail_timestamps_since_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        write_records(
            &path,
            &[
                (ts(0, 0), Stream::Stdout, false, "a"),
                (ts(1, 500), Stream::Stderr, false, "b"),
                (ts(2, 0), Stream::Stdout, true, "c1 "),
                (ts(2, 1), Stream::Stderr, false, "d"),
                (ts(3, 0), Stream::Stdout, false, "c2"),
                (ts(4, 0), Stream::Stdout, false, "e"),
            ],
        );
        assert_eq!(read(&path, LogOptions::default()), "a\nb\nd\nc1 c2\ne\n");
        let tail = |n| LogOptions {
            tail_lines: Some(n),
            ..Default::default()
        };
        assert_eq!(read(&path, tail(2)), "c1 c2\ne\n");
        assert_eq!(read(&path, tail(0)), "");
        assert_eq!(read(&path, tail(100)), "a\nb\nd\nc1 c2\ne\n");
        assert_eq!(
            read(
                &path,
                LogOptions {
                    tail_lines: Some(2),
                    timestamps: true,
                    ..Default::default()
                }
            ),
            "2023-11-14T22:13:22.000000000Z c1 c2\n2023-11-14T22:13:24.000000000Z e\n"
        );
        assert_eq!(
            read(
                &path,
                LogOptions {
                    since: Some(ts(2, 1)),
                    ..Default::default()
                }
            ),
            "d\ne\n",
            "a joined line carries the time of its first fragment"
        );
        assert_eq!(
            read(
                &path,
                LogOptions {
                    limit_bytes: Some(5),
                    ..Default::default()
                }
            ),
            "a\nb\nd"
        );
    }

    #[test]
    fn missing_file_and_malformed_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        assert_eq!(read(&path, LogOptions::default()), "");
        std::fs::write(
            &path,
            "garbage\n2023-11-14T22:13:20Z stdout F ok\n2023-11-14T22:13:20Z stdout F half",
        )
        .unwrap();
        // The record without its newline is still being written: not shown.
        assert_eq!(read(&path, LogOptions::default()), "ok\n");
    }

    #[test]
    fn last_lines_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let log = LogWriter::create(&path).unwrap();
        log.stream(Stream::Stdout)
            .write_all(b"1\n2\n3\n45678\n")
            .unwrap();
        assert_eq!(last_lines(&path, 2, 100).unwrap(), "3\n45678\n");
        assert_eq!(last_lines(&path, 2, 4).unwrap(), "678\n");
    }

    #[tokio::test]
    async fn follow_emits_existing_then_new_lines_until_done() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let log = LogWriter::create(&path).unwrap();
        let mut out = log.stream(Stream::Stdout);
        out.write_all(b"old1\nold2\n").unwrap();

        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let opts = LogOptions {
            tail_lines: Some(1),
            ..Default::default()
        };
        let stream = follow_log(path.clone(), opts, async {
            let _ = done_rx.await;
        });
        let mut stream = Box::pin(stream);

        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(&first[..], b"old2\n");

        out.write_all(b"new\npart").unwrap();
        let deadline = Duration::from_secs(5);
        let next = tokio::time::timeout(deadline, stream.next()).await.unwrap();
        assert_eq!(&next.unwrap().unwrap()[..], b"new\n");

        // The unterminated line shows up when the writer closes and `done` fires.
        log.close().unwrap();
        done_tx.send(()).unwrap();
        let mut rest = Vec::new();
        while let Some(chunk) = tokio::time::timeout(deadline, stream.next()).await.unwrap() {
            rest.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(rest, b"part");
    }

    #[tokio::test]
    async fn follow_stops_at_limit_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let log = LogWriter::create(&path).unwrap();
        log.stream(Stream::Stdout).write_all(b"abcdef\n").unwrap();
        let opts = LogOptions {
            limit_bytes: Some(3),
            ..Default::default()
        };
        // `done` never fires: the limit alone must end the stream.
        let stream = follow_log(path, opts, futures::future::pending());
        let all: Vec<_> = tokio::time::timeout(Duration::from_secs(5), stream.collect::<Vec<_>>())
            .await
            .unwrap();
        let bytes: Vec<u8> = all.into_iter().flat_map(|c| c.unwrap().to_vec()).collect();
        assert_eq!(bytes, b"abc");
    }
}
