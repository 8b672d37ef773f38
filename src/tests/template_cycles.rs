//! Templates whose objects need each other (issue 12): a generated column, a
//! default or a CHECK calling a function whose SQL-standard body reads that
//! very table or names its row type. PostgreSQL's pg_dump prints such a
//! generated column as a plain column with a default (and cannot restore it),
//! so the fidelity oracle cannot tell the two apart: these tests read the
//! catalog and what the copy computes.

#[pgrx::pg_schema]
#[allow(unused_imports)]
pub(crate) mod tests {
    use crate::tests::*;
    use pgrx::prelude::*;

    /// Each object built in the steps a user takes.
    const CYCLE_TEMPLATE: &str = r#"
SET LOCAL search_path = tenant_template;
CREATE TABLE counted (a int);
CREATE FUNCTION counted_plus(x int) RETURNS bigint LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT count(*) + x FROM counted; END;
ALTER TABLE counted ADD COLUMN total bigint GENERATED ALWAYS AS (counted_plus(a)) STORED;
ALTER TABLE counted ADD COLUMN note text;
CREATE TABLE parts (at int, v int) PARTITION BY RANGE (at);
CREATE TABLE parts_low PARTITION OF parts FOR VALUES FROM (0) TO (100);
CREATE FUNCTION scaled(x int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT x * 10 FROM (SELECT NULL::parts) AS z; END;
ALTER TABLE parts ADD COLUMN v10 int GENERATED ALWAYS AS (scaled(v)) STORED;
ALTER TABLE parts ALTER COLUMN v SET DEFAULT scaled(1);
ALTER TABLE parts ADD CONSTRAINT parts_v CHECK (scaled(v) < 1000);
CREATE FUNCTION unrelated(x int) RETURNS int LANGUAGE sql IMMUTABLE RETURN x + 1;
RESET search_path;
"#;

    /// The copy `schema` has the template's generated columns, defaults and
    /// checks, in the template's column order, and they compute.
    fn assert_cycles_behave(schema: &str) {
        assert_eq!(
            one::<String>(&format!(
                "SELECT string_agg(attname || ':' || attgenerated::text, ',' ORDER BY attnum) FROM pg_attribute
                  WHERE attrelid = '{schema}.counted'::regclass AND attnum > 0"
            )),
            Some("a:,total:s,note:".into())
        );
        assert_eq!(
            one::<String>(&format!(
                "SELECT string_agg(attname || ':' || attgenerated::text, ',' ORDER BY attnum) FROM pg_attribute
                  WHERE attrelid = '{schema}.parts'::regclass AND attnum > 0"
            )),
            Some("at:,v:,v10:s".into())
        );
        // The functions have their real bodies, not their placeholders.
        assert_eq!(one::<i32>(&format!("SELECT {schema}.scaled(2)")), Some(20));
        Spi::run(&format!("INSERT INTO {schema}.counted (a) VALUES (5); INSERT INTO {schema}.parts (at) VALUES (1)"))
            .unwrap();
        // total: 5 plus the rows counted before this one; v: scaled(1); v10: scaled(v).
        assert_eq!(
            one::<String>(&format!(
                "SELECT c.total || '/' || p.v || '/' || p.v10 FROM {schema}.counted c, {schema}.parts p"
            )),
            Some("5/10/100".into())
        );
        let caught = one::<String>(&format!(
            "DO $$ BEGIN INSERT INTO {schema}.parts VALUES (2, 500); RAISE 'no error'; EXCEPTION WHEN OTHERS THEN
                 PERFORM set_config('tc.test_sqlstate', SQLSTATE, true); END $$;
             SELECT current_setting('tc.test_sqlstate')"
        ));
        assert_eq!(caught.as_deref(), Some("23514"), "the partitioned table's CHECK holds in the copy");
    }

    #[pg_test]
    fn a_generated_column_whose_function_reads_its_table_is_copied_generated_in_place() {
        Spi::run(CYCLE_TEMPLATE).unwrap();
        let (status, message, _, _) = create("0e0e0e0e-0000-4000-8000-000000000001", Some("cycles_a"));
        assert_eq!(status, "SUCCESS", "{message}");
        assert_cycles_behave("cycles_a");
        // A second copy, from the cached statements, is the same.
        let (status, message, _, _) = create("0e0e0e0e-0000-4000-8000-000000000002", Some("cycles_b"));
        assert_eq!(status, "SUCCESS", "{message}");
        assert_cycles_behave("cycles_b");
    }

    #[pg_test]
    fn a_template_with_cycles_survives_backup_drop_and_restore() {
        Spi::run(CYCLE_TEMPLATE).unwrap();
        let (status, message, id, _) = create("0e0e0e0e-0000-4000-8000-000000000003", Some("cycles_c"));
        assert_eq!(status, "SUCCESS", "{message}");
        Spi::run("INSERT INTO cycles_c.counted (a) VALUES (1); INSERT INTO cycles_c.counted (a) VALUES (2)").unwrap();
        let rows = "SELECT string_agg(a || ':' || total, ',' ORDER BY a) FROM cycles_c.counted";
        let before = one::<String>(rows);
        assert_eq!(before.as_deref(), Some("1:1,2:3"));
        let (status, message, backup_id, _) = take_backup(&id.unwrap(), true);
        assert_eq!(status, "SUCCESS", "{message}");
        Spi::run("DROP SCHEMA cycles_c CASCADE").unwrap();
        let restored =
            one::<String>(&format!("SELECT status FROM tenant.restore_institution_schema('{}')", backup_id.unwrap()));
        assert_eq!(restored.as_deref(), Some("SUCCESS"));
        // The restored rows keep the values computed before (reloaded in
        // one statement, they would be computed again otherwise: 1:1,2:2).
        assert_eq!(one::<String>(rows), before);
        Spi::run("DELETE FROM cycles_c.counted").unwrap();
        assert_cycles_behave("cycles_c");
    }

    /// Only a function on a cycle is created twice (placeholder, then its
    /// body): other templates keep one statement per function.
    #[pg_test]
    fn only_functions_on_a_cycle_get_a_placeholder() {
        Spi::run(CYCLE_TEMPLATE).unwrap();
        let script = crate::copy::template::generate("tenant_template", "tenant_template_owner").unwrap();
        let mut functions: Vec<String> = script
            .iter()
            .filter(|(kind, _)| *kind == "functions")
            .map(|(_, s)| crate::copy::template::render(s, "x", "y"))
            .map(|s| s.split('(').next().unwrap_or_default().to_string())
            .collect();
        functions.sort();
        assert_eq!(
            functions,
            vec![
                "CREATE FUNCTION counted_plus",
                "CREATE FUNCTION scaled",
                "CREATE FUNCTION unrelated",
                "CREATE OR REPLACE FUNCTION counted_plus",
                "CREATE OR REPLACE FUNCTION scaled",
            ]
        );
    }

    /// A generated column calling a function that returns the table's row
    /// type can only be built with ALTER TABLE ... ADD COLUMN: refused by
    /// name before anything is created, with what to do instead.
    #[pg_test]
    fn a_generated_column_whose_function_returns_its_row_type_is_refused_by_name() {
        Spi::run(
            "CREATE TABLE tenant_template.pairs (a int, b int);
             CREATE FUNCTION tenant_template.pair_of(x int) RETURNS tenant_template.pairs LANGUAGE sql IMMUTABLE
                 AS 'SELECT x, x';
             ALTER TABLE tenant_template.pairs ADD COLUMN c int GENERATED ALWAYS AS ((tenant_template.pair_of(a)).b) STORED",
        )
        .unwrap();
        let (status, message, _, sqlstate) = create("0e0e0e0e-0000-4000-8000-000000000004", Some("cycles_d"));
        assert_eq!((status.as_str(), sqlstate.as_deref()), ("ERROR", Some("0A000")), "{message}");
        assert!(message.contains("generated column c of table tenant_template.pairs"), "{message}");
        let (_, hint) = crate::copy::template::unsupported_in("tenant_template").unwrap().unwrap();
        assert!(hint.is_some_and(|h| h.contains("trigger")), "the refusal says what to do");
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_namespace WHERE nspname = 'cycles_d'"), Some(0));
    }

    /// An integrity repair recreates a missing function from its real
    /// statement, never from its placeholder.
    #[pg_test]
    fn a_repair_takes_a_function_on_a_cycle_with_its_real_body() {
        Spi::run(CYCLE_TEMPLATE).unwrap();
        let script = crate::copy::template::generate("tenant_template", "tenant_template_owner").unwrap();
        let functions = crate::copy::template::without_placeholders(
            script.into_iter().filter(|(kind, _)| *kind == "functions").map(|(_, s)| s).collect(),
        );
        let texts: Vec<String> = functions.iter().map(|s| crate::copy::template::render(s, "x", "y")).collect();
        assert_eq!(texts.len(), 3, "{texts:#?}");
        for text in &texts {
            assert!(text.starts_with("CREATE FUNCTION "), "{text}");
            assert!(!text.contains(" AS 'SELECT NULL"), "a placeholder is left: {text}");
        }
        assert!(texts.iter().any(|t| t.starts_with("CREATE FUNCTION counted_plus(") && t.contains("FROM counted")));
    }
}
