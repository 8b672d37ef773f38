//! The examples in docs/*.md are run and compared with what the pages show, as
//! pg_regress does, so that the documentation cannot drift from the code.
//!
//! The convention (docs/README.md explains it to writers):
//! - in docs/*.md and README.md, a ```sql block is an example: it runs, and the ```output block that follows it
//!   (only blank lines between) holds exactly what `psql -X -q` prints for it, errors
//!   and notices included (VERBOSITY verbose, so errors show their SQLSTATE; the
//!   LOCATION lines, which name source lines, are left out). A ```sql block without
//!   an ```output block must print nothing;
//! - a ```sql unchecked block is shown, never run (signatures, pg_cron-only
//!   snippets, statements for another database);
//! - the examples of one page run in order, in one psql session, in a fresh database
//!   where docs/examples-setup.sql ran first (the extension and the demo's template),
//!   in a cluster of this test's own (so no other test's roles are in the way);
//!   between pages the database and every role it created are dropped.
//!
//! `TC_DOCS_BLESS=1 ./tc test` (or this test alone with TC_DOCS_BLESS=1) writes the
//! outputs of a real run into the pages instead of comparing: for after a deliberate
//! change; review the diff before committing it.

mod cluster;
use cluster::{required_env, Cluster};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const MARKER: &str = "@@tc-docs-example@@";

/// A fenced block of a page: its indentation (a block inside a list item is indented),
/// its info string, its body without the indentation, and the lines (0-based) of its
/// opening and closing fences.
#[derive(Clone)]
struct Block {
    indent: String,
    info: String,
    body: String,
    open: usize,
    close: usize,
}

struct Example {
    sql: Block,
    output: Option<Block>,
}

fn blocks(page: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut current: Option<Block> = None;
    let mut body: Vec<&str> = Vec::new();
    for (number, line) in page.lines().enumerate() {
        let indent = &line[..line.len() - line.trim_start().len()];
        match current.take() {
            None => {
                if let Some(info) = line.trim_start().strip_prefix("```") {
                    let info = info.trim().to_string();
                    current =
                        Some(Block { indent: indent.to_string(), info, body: String::new(), open: number, close: 0 });
                    body.clear();
                }
            }
            Some(mut block) => {
                if line.trim() == "```" {
                    block.body = body.join("\n");
                    block.close = number;
                    found.push(block);
                } else {
                    body.push(line.strip_prefix(block.indent.as_str()).unwrap_or(line));
                    current = Some(block);
                }
            }
        }
    }
    assert!(current.is_none(), "a fenced block is not closed");
    found
}

/// The checked examples of a page, each with its expected output block if it has one.
fn examples(page: &str, name: &str) -> Vec<Example> {
    let lines: Vec<&str> = page.lines().collect();
    let all = blocks(page);
    let mut found = Vec::new();
    for (i, block) in all.iter().enumerate() {
        let between_blank = |next: &Block| lines[block.close + 1..next.open].iter().all(|l| l.trim().is_empty());
        match block.info.as_str() {
            "sql" => {
                let output = all.get(i + 1).filter(|next| next.info == "output" && between_blank(next)).cloned();
                found.push(Example { sql: block.clone(), output });
            }
            "output" => {
                let after_sql = i > 0 && all[i - 1].info == "sql" && {
                    let previous = &all[i - 1];
                    lines[previous.close + 1..block.open].iter().all(|l| l.trim().is_empty())
                };
                assert!(after_sql, "{name}:{}: an output block must follow a sql block", block.open + 1);
            }
            info if info.starts_with("sql") && info != "sql unchecked" => {
                panic!("{name}:{}: unknown block kind {info:?} (sql or sql unchecked)", block.open + 1)
            }
            _ => {}
        }
    }
    found
}

/// Output as compared: no trailing blanks (editors strip them), no LOCATION lines (they
/// name source files and lines), no trailing empty lines.
fn normalise(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim_end).filter(|l| !l.starts_with("LOCATION:  ")).collect();
    lines.join("\n").trim_end_matches('\n').trim_end().to_string()
}

fn psql(cluster: &Cluster, bin: &str, db: &str) -> Command {
    let mut command = cluster.tool(bin, "psql");
    command.args(["-X", "-q", "-d", db]);
    command
}

/// Run the page's examples in one psql session; psql writes results and messages to
/// one pipe (pg_regress does the same), in the order they happen.
fn run_examples(cluster: &Cluster, bin: &str, db: &str, examples: &[Example]) -> Vec<String> {
    let mut script = String::from("\\set VERBOSITY verbose\n");
    for example in examples {
        script.push_str(&format!("\\echo '{MARKER}'\n{}\n", example.sql.body));
    }
    let mut command = psql(cluster, bin, db);
    let (reader, writer) = std::io::pipe().unwrap();
    command.stdin(Stdio::piped()).stdout(writer.try_clone().unwrap()).stderr(writer);
    let mut child = command.spawn().unwrap();
    drop(command);
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(script.as_bytes()).unwrap();
    });
    let mut output = String::new();
    {
        use std::io::Read;
        let mut reader = reader;
        reader.read_to_string(&mut output).unwrap();
    }
    feeder.join().unwrap();
    assert!(child.wait().unwrap().success(), "psql failed:\n{output}");
    let separator = format!("{MARKER}\n");
    let mut parts = output.split(&separator);
    let before = parts.next().unwrap_or_default();
    assert!(before.trim().is_empty(), "output before the first example: {before}");
    let outputs: Vec<String> = parts.map(normalise).collect();
    assert_eq!(outputs.len(), examples.len(), "psql output:\n{output}");
    outputs
}

fn unified_diff(expected: &str, actual: &str) -> String {
    let dir = std::env::temp_dir();
    let (e, a) = (dir.join("tc-docs-expected.txt"), dir.join("tc-docs-actual.txt"));
    std::fs::write(&e, format!("{expected}\n")).unwrap();
    std::fs::write(&a, format!("{actual}\n")).unwrap();
    let out = Command::new("diff").args(["-u", "--label", "documented", "--label", "actual"]).arg(&e).arg(&a).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

/// The page with each example's output block replaced by (or given) the actual output.
fn blessed(page: &str, examples: &[Example], outputs: &[String]) -> String {
    let mut lines: Vec<String> = page.lines().map(str::to_string).collect();
    for (example, actual) in examples.iter().zip(outputs).rev() {
        let indent = &example.sql.indent;
        let new_block: Vec<String> = if actual.is_empty() {
            Vec::new()
        } else {
            let mut b = vec![format!("{indent}```output")];
            b.extend(actual.lines().map(|l| if l.is_empty() { String::new() } else { format!("{indent}{l}") }));
            b.push(format!("{indent}```"));
            b
        };
        // The output block goes right after the sql block (blank lines between are dropped).
        let replaced = match &example.output {
            Some(old) => example.sql.close + 1..old.close + 1,
            None => example.sql.close + 1..example.sql.close + 1,
        };
        lines.splice(replaced, new_block);
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// The pages checked: docs/*.md and the README's tour, as (name shown, path).
fn pages(docs: &Path) -> Vec<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(docs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| (format!("docs/{}", p.file_name().unwrap().to_string_lossy()), p))
        .collect();
    found.sort();
    found.push(("README.md".to_string(), docs.join("../README.md")));
    found
}

fn batch(cluster: &Cluster, db: &str, sql: &str) {
    cluster.connect(db).batch_execute(sql).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
}

/// Drop the page's database and the roles it created (tenant roles belong to the
/// cluster and would be in the next page's way).
fn clean_up(cluster: &Cluster, roles_before: &[String]) {
    batch(cluster, "postgres", "DROP DATABASE IF EXISTS docs WITH (FORCE)");
    let mut admin = cluster.connect("postgres");
    let roles: Vec<String> = admin
        .query("SELECT rolname::text FROM pg_roles ORDER BY oid DESC", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .filter(|r: &String| !roles_before.contains(r))
        .collect();
    for role in roles {
        admin.batch_execute(&format!("DROP ROLE \"{role}\"")).unwrap_or_else(|e| panic!("drop role {role}: {e:?}"));
    }
}

#[test]
fn documented_examples_print_what_the_docs_show() {
    let bin = required_env("TC_TEST_PG_BIN");
    let bless = std::env::var("TC_DOCS_BLESS").is_ok_and(|v| v == "1");
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let setup = std::fs::read_to_string(docs.join("examples-setup.sql")).unwrap();
    let mut cluster = Cluster::init("docs", &bin);
    cluster.start(&bin);
    let roles_before: Vec<String> = cluster
        .connect("postgres")
        .query("SELECT rolname::text FROM pg_roles", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();

    let mut failures = String::new();
    let mut checked = 0;
    for (name, page) in pages(&docs) {
        let text = std::fs::read_to_string(&page).unwrap();
        let examples = examples(&text, &name);
        if examples.is_empty() {
            continue;
        }
        batch(&cluster, "postgres", "CREATE DATABASE docs");
        let setup_run = psql(&cluster, &bin, "docs").args(["-v", "ON_ERROR_STOP=1", "-c", &setup]).output().unwrap();
        assert!(setup_run.status.success(), "examples-setup.sql: {}", String::from_utf8_lossy(&setup_run.stderr));
        let outputs = run_examples(&cluster, &bin, "docs", &examples);
        clean_up(&cluster, &roles_before);
        checked += examples.len();
        if bless {
            std::fs::write(&page, blessed(&text, &examples, &outputs)).unwrap();
            continue;
        }
        for (example, actual) in examples.iter().zip(&outputs) {
            let expected = example.output.as_ref().map(|b| normalise(&b.body)).unwrap_or_default();
            if &expected != actual {
                failures.push_str(&format!(
                    "{name}:{}: the example prints something else than the page shows\n{}\n{}\n",
                    example.sql.open + 1,
                    example.sql.body,
                    unified_diff(&expected, actual)
                ));
            }
        }
    }
    cluster.stop();
    assert!(checked > 0, "no examples found in docs/");
    assert!(
        failures.is_empty(),
        "{failures}\nIf the change is deliberate, regenerate the outputs with TC_DOCS_BLESS=1 and review the diff."
    );
}
