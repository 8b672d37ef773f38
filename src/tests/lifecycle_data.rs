//! Data lifecycle (issue 16): retention rules and one batch of retention
//! (included into the `tests` module). `CALL tenant.apply_retention()` commits,
//! so the fleet run, its log rows and pg_cron are tested over real connections
//! in pgrx-tests/tests/lifecycle_data_retention.rs.

#[pgrx::pg_schema]
#[allow(unused_imports)]
pub(crate) mod tests {
    use crate::tests::*;
    use pgrx::prelude::*;

    fn retention_error(sql: &str) -> Option<String> {
        sqlstate_of_statement(sql)
    }

    /// One batch for the institution schema `schema` and `table`, at now():
    /// rows removed, archive table, skipped reason.
    fn retention_step(schema: &str, table: &str, batch_size: i32) -> (i64, Option<String>, Option<String>) {
        Spi::connect_mut(|c| {
            let row = c
            .update(
                &format!(
                    "SELECT removed, archive_table, skipped FROM tenant.retention_batch(
                         (SELECT id FROM tenant.tenant_schemas WHERE schema_name = '{schema}'), '{table}', now(), {batch_size})"
                ),
                None,
                &[],
            )
            .unwrap()
            .first();
            (row.get::<i64>(1).unwrap().unwrap(), row.get::<String>(2).unwrap(), row.get::<String>(3).unwrap())
        })
    }

    fn count_of(sql: &str) -> i64 {
        one::<i64>(sql).unwrap()
    }

    #[pg_test]
    fn retention_rules_name_a_template_table_and_a_date_column() {
        Spi::run(
            "CREATE TABLE tenant_template.rr_events (id int, at timestamptz, day date, note text);
         CREATE DOMAIN tenant_template.rr_when AS timestamp CHECK (VALUE > '2000-01-01');
         CREATE TABLE tenant_template.rr_logs (id int, at tenant_template.rr_when);
         CREATE VIEW tenant_template.rr_view AS SELECT * FROM tenant_template.rr_events;
         CREATE TABLE tenant_template.rr_clash (id int, at date);
         CREATE TABLE tenant_template.rr_clash_archive (id int, at date);",
        )
        .unwrap();
        let set = |args: &str| retention_error(&format!("SELECT tenant.set_retention({args})"));
        assert_eq!(set("NULL, 'at', '1 year', true"), Some("22004".into()));
        assert_eq!(set("'rr_events', NULL, '1 year', true"), Some("22004".into()));
        assert_eq!(set("'rr_events', 'at', '1 year', NULL"), Some("22004".into()));
        assert_eq!(set("'rr_missing', 'at', '1 year', true"), Some("42P01".into()));
        assert_eq!(set("'rr_view', 'at', '1 year', true"), Some("42809".into()));
        assert_eq!(set("'rr_events', 'nope', '1 year', true"), Some("42703".into()));
        assert_eq!(set("'rr_events', 'note', '1 year', true"), Some("42804".into()));
        assert_eq!(set("'rr_events', 'at', '-1 day', true"), Some("22023".into()));
        assert_eq!(set("'rr_events', 'at', '0', true"), Some("22023".into()));
        // The archive's name is taken by a table of the template: refused with
        // archive, accepted without.
        assert_eq!(set("'rr_clash', 'at', '1 day', true"), Some("42P07".into()));
        assert_eq!(set("'rr_clash', 'at', '1 day', false"), None);
        // Nothing was stored by the refused calls.
        assert_eq!(
        count_of("SELECT count(*) FROM tenant.retention_rules WHERE table_name IN ('rr_events', 'rr_missing', 'rr_view')"),
        0
    );

        // A date, a timestamptz and a domain over timestamp all date a row.
        assert_eq!(set("'rr_events', 'day', '7 years', false"), None);
        assert_eq!(set("'rr_events', 'at', '1 year', true"), None);
        assert_eq!(set("'rr_logs', 'at', '30 days', true"), None);
        assert_eq!(
        one::<String>("SELECT date_column || ' ' || keep::text || ' ' || archive FROM tenant.retention_rules WHERE table_name = 'rr_events'"),
        Some("at 1 year true".into()),
        "setting a rule again replaces it"
    );
        assert_eq!(
            one::<String>("SELECT tenant.set_retention('rr_events', NULL, NULL, NULL)"),
            Some("retention rule of \"rr_events\" removed".into())
        );
        assert_eq!(count_of("SELECT count(*) FROM tenant.retention_rules WHERE table_name = 'rr_events'"), 0);
    }

    #[pg_test]
    fn retention_archive_names_are_derived_in_one_place_and_fit() {
        use crate::ops::retention::archive_table_name;
        assert_eq!(archive_table_name("grades"), Ok("grades_archive".to_string()));
        let longest = "g".repeat(63 - "_archive".len());
        assert_eq!(archive_table_name(&longest).map(|name| name.len()), Ok(63));
        assert_eq!(archive_table_name(&format!("{longest}x")).map_err(|e| e.sqlstate()), Err("42622".to_string()));
    }

    #[pg_test]
    fn retention_batch_moves_old_rows_into_the_archive_as_the_tenants_role() {
        Spi::run("CREATE TABLE tenant_template.rb_events (id serial PRIMARY KEY, at timestamptz, body text)").unwrap();
        let (_, _, id, _) = create("abab0000-0000-4000-8000-000000000001", Some("rb_one"));
        let id = id.unwrap();
        Spi::run(
            "INSERT INTO rb_one.rb_events (at, body)
         SELECT now() - i * interval '1 day', 'row ' || i FROM generate_series(1, 100) i;
         INSERT INTO rb_one.rb_events (at, body) VALUES (NULL, 'undated')",
        )
        .unwrap();
        // Who deletes: a trigger the tenant could have written records current_user.
        Spi::run(
            "CREATE TABLE rb_one.seen (who text);
         CREATE FUNCTION rb_one.note_who() RETURNS trigger LANGUAGE plpgsql AS
             $$BEGIN INSERT INTO rb_one.seen VALUES (current_user); RETURN OLD; END$$;
         CREATE TRIGGER note_who BEFORE DELETE ON rb_one.rb_events FOR EACH ROW EXECUTE FUNCTION rb_one.note_who();
         GRANT ALL ON rb_one.seen TO rb_one_owner;",
        )
        .unwrap();
        Spi::run("SELECT tenant.set_retention('rb_events', 'at', '30 days', true)").unwrap();

        // Rows 31..100 days old go, in batches of at most batch_size rows.
        assert_eq!(retention_step("rb_one", "rb_events", 50), (50, Some("rb_events_archive".into()), None));
        assert_eq!(retention_step("rb_one", "rb_events", 50), (20, Some("rb_events_archive".into()), None));
        assert_eq!(retention_step("rb_one", "rb_events", 50), (0, Some("rb_events_archive".into()), None));
        assert_eq!(count_of("SELECT count(*) FROM rb_one.rb_events"), 31, "30 recent rows and the undated one stay");
        assert_eq!(count_of("SELECT count(*) FROM rb_one.rb_events WHERE at < now() - interval '30 days'"), 0);
        assert_eq!(count_of("SELECT count(*) FROM rb_one.rb_events_archive"), 70);
        assert_eq!(
        count_of("SELECT count(*) FROM rb_one.rb_events_archive WHERE body = 'row ' || id AND at < now() - interval '30 days'"),
        70,
        "archived rows keep every column"
    );
        assert_eq!(
            one::<String>("SELECT string_agg(DISTINCT who, ',') FROM rb_one.seen"),
            Some("rb_one_owner".into()),
            "the tenant's trigger ran as the tenant's role"
        );
        // The archive belongs to the tenant, is known to the extension, and is a
        // plain table: no default calling the source's sequence, no key.
        assert_eq!(
            one::<String>(
                "SELECT relowner::regrole::text FROM pg_class WHERE oid = 'rb_one.rb_events_archive'::regclass"
            ),
            Some("rb_one_owner".into())
        );
        assert_eq!(
            count_of(&format!(
                "SELECT count(*) FROM tenant.retention_archives
              WHERE schema_id = '{id}' AND table_name = 'rb_events' AND archive_table = 'rb_events_archive'"
            )),
            1
        );
        assert_eq!(
            crate::ops::retention::archive_tables(uuid::Uuid::parse_str(&id).unwrap()),
            Ok(vec!["rb_events_archive".to_string()])
        );
        assert_eq!(count_of("SELECT count(*) FROM pg_attrdef WHERE adrelid = 'rb_one.rb_events_archive'::regclass"), 0);

        // A column the table gains later is added to the archive before rows move.
        Spi::run("ALTER TABLE rb_one.rb_events ADD COLUMN grade numeric(4,1) DEFAULT 1.5").unwrap();
        Spi::run("UPDATE rb_one.rb_events SET at = now() - interval '90 days' WHERE body = 'row 1'").unwrap();
        assert_eq!(retention_step("rb_one", "rb_events", 50).0, 1);
        assert_eq!(
        one::<String>("SELECT format_type(atttypid, atttypmod) || ' ' || (SELECT grade::text FROM rb_one.rb_events_archive WHERE body = 'row 1')
                         FROM pg_attribute WHERE attrelid = 'rb_one.rb_events_archive'::regclass AND attname = 'grade'"),
        Some("numeric(4,1) 1.5".into())
    );
    }

    #[pg_test]
    fn retention_overrides_of_institutions_change_keep_and_archive_in_their_config() {
        Spi::run("CREATE TABLE tenant_template.ro_logs (id int, day date)").unwrap();
        for (n, schema) in ["ro_default", "ro_longer", "ro_no_archive", "ro_off", "ro_broken"].iter().enumerate() {
            create(&format!("acac0000-0000-4000-8000-00000000000{n}"), Some(schema));
            Spi::run(&format!(
                "INSERT INTO {schema}.ro_logs SELECT i, current_date - i * 10 FROM generate_series(1, 50) i"
            ))
            .unwrap();
        }
        let configure = |schema: &str, config: &str| {
            Spi::run(&format!("UPDATE tenant.tenant_schemas SET config = '{config}' WHERE schema_name = '{schema}'"))
                .unwrap()
        };
        configure("ro_longer", r#"{"retention": {"ro_logs": {"keep": "305 days"}}}"#);
        configure("ro_no_archive", r#"{"retention": {"ro_logs": {"archive": false}}}"#);
        configure("ro_off", r#"{"retention": {"ro_logs": null}}"#);
        configure("ro_broken", r#"{"retention": {"ro_logs": {"keep": "soon"}}}"#);
        Spi::run("SELECT tenant.set_retention('ro_logs', 'day', '105 days', true)").unwrap();

        // Rows dated 10, 20, ..., 500 days ago: 40 are older than 105 days, 20 older than 305.
        assert_eq!(retention_step("ro_default", "ro_logs", 1000), (40, Some("ro_logs_archive".into()), None));
        assert_eq!(retention_step("ro_longer", "ro_logs", 1000).0, 20);
        assert_eq!(retention_step("ro_no_archive", "ro_logs", 1000), (40, None, None));
        assert_eq!(one::<bool>("SELECT to_regclass('ro_no_archive.ro_logs_archive') IS NULL"), Some(true));
        let (removed, _, skipped) = retention_step("ro_off", "ro_logs", 1000);
        assert_eq!((removed, skipped.is_some()), (0, true));
        assert_eq!(count_of("SELECT count(*) FROM ro_off.ro_logs"), 50);
        assert_eq!(
        retention_error(
            "SELECT * FROM tenant.retention_batch((SELECT id FROM tenant.tenant_schemas WHERE schema_name = 'ro_broken'), 'ro_logs', now(), 10)"
        ),
        Some("22023".into())
    );
        assert_eq!(count_of("SELECT count(*) FROM ro_broken.ro_logs"), 50);
    }

    #[pg_test]
    fn retention_batch_skips_what_it_must_not_touch() {
        Spi::run("CREATE TABLE tenant_template.rs_items (id int, at timestamp)").unwrap();
        let (_, _, suspended, _) = create("adad0000-0000-4000-8000-000000000001", Some("rs_suspended"));
        create("adad0000-0000-4000-8000-000000000002", Some("rs_squatted"));
        for schema in ["rs_suspended", "rs_squatted"] {
            Spi::run(&format!("INSERT INTO {schema}.rs_items VALUES (1, now() - interval '1 year')")).unwrap();
        }
        Spi::run("SELECT tenant.set_retention('rs_items', 'at', '1 day', true)").unwrap();
        Spi::run(&format!("SELECT * FROM tenant.suspend_institution('{}')", suspended.unwrap())).unwrap();
        let (removed, _, skipped) = retention_step("rs_suspended", "rs_items", 10);
        assert_eq!((removed, skipped), (0, Some("the institution is SUSPENDED".into())));

        // A table of the archive's name the extension did not create is never written into.
        Spi::run("CREATE TABLE rs_squatted.rs_items_archive (id int, at timestamp)").unwrap();
        assert_eq!(
        retention_error(
            "SELECT * FROM tenant.retention_batch((SELECT id FROM tenant.tenant_schemas WHERE schema_name = 'rs_squatted'), 'rs_items', now(), 10)"
        ),
        Some("42P07".into())
    );
        assert_eq!(count_of("SELECT count(*) FROM rs_squatted.rs_items"), 1);
        // A table without a rule is not a retention target.
        assert_eq!(
        retention_error(
            "SELECT * FROM tenant.retention_batch((SELECT id FROM tenant.tenant_schemas WHERE schema_name = 'rs_squatted'), 'rs_nothing', now(), 10)"
        ),
        Some("42704".into())
    );
    }

    #[pg_test]
    fn retention_log_rows_carry_counts_or_the_error() {
        let (_, _, id, _) = create("aeae0000-0000-4000-8000-000000000001", Some("rl_one"));
        let id = id.unwrap();
        Spi::run(&format!(
            "SELECT tenant.note_retention('{id}', 'grades', '{{\"removed\": 12, \"archived\": 12}}', NULL, NULL);
         SELECT tenant.note_retention('{id}', 'grades', '{{\"removed\": 3}}', '55P03', 'lock timeout');"
        ))
        .unwrap();
        assert_eq!(
        one::<String>(&format!(
            "SELECT string_agg(status || ':' || (metadata->>'table_name') || ':' || (metadata->>'removed') || ':' || COALESCE(error_sqlstate, '-'), ' ' ORDER BY id)
               FROM tenant.schema_operations WHERE schema_id = '{id}' AND operation_type = 'RETENTION'"
        )),
        Some("COMPLETED:grades:12:- FAILED:grades:3:55P03".into())
    );
        assert_eq!(
            retention_error(&format!("SELECT tenant.note_retention('{id}', 'grades', '{{}}', 'bad', NULL)")),
            Some("22023".into())
        );
    }

    /// A usage snapshot of a tenant at a given time with a given size and rows written.
    fn snapshot_at(schema: &str, taken_at: &str, gib: i64, written: (i64, i64, i64)) {
        Spi::run(&format!(
            "INSERT INTO tenant.usage_snapshots
             (taken_at, schema_id, schema_name, status, table_count, storage_bytes, row_estimate, seq_scans, idx_scans,
              tup_inserted, tup_updated, tup_deleted, inserted, updated, deleted)
         SELECT '{taken_at}', id, schema_name, status, 1, {gib}::bigint * 1073741824, 0, 0, 0, 0, 0, 0, {}, {}, {}
           FROM tenant.tenant_schemas WHERE schema_name = '{schema}'",
            written.0, written.1, written.2
        ))
        .unwrap();
    }

    #[pg_test]
    fn usage_report_prices_known_snapshots() {
        for (n, schema) in ["ur_steady", "ur_late", "ur_new", "ur_dropped"].iter().enumerate() {
            create(&format!("afaf0000-0000-4000-8000-00000000000{n}"), Some(schema));
        }
        // January 2020 is 30 days long here: [2020-01-01, 2020-01-31).
        snapshot_at("ur_steady", "2019-12-20 00:00+00", 1, (999, 0, 0)); // carries 1 GiB into the period
        snapshot_at("ur_steady", "2020-01-16 00:00+00", 3, (1000, 200, 300)); // 3 GiB for the last 15 days
        snapshot_at("ur_steady", "2020-02-05 00:00+00", 5, (7, 0, 0)); // after the period
        snapshot_at("ur_late", "2020-01-25 00:00+00", 2, (0, 0, 0)); // 2 GiB for the last 6 days
        snapshot_at("ur_dropped", "2020-01-01 00:00+00", 1, (10, 0, 0)); // 1 GiB until its drop on the 16th
        Spi::run(
        "UPDATE tenant.tenant_schemas SET status = 'DROPPED', updated_at = '2020-01-16 00:00+00' WHERE schema_name = 'ur_dropped'",
    )
    .unwrap();
        let report = Spi::connect(|c| {
            c.select(
                "SELECT schema_name, storage_gb_months::text, rows_written, total_cost::text, cost::text, queries
               FROM tenant.usage_report(tstzrange('2020-01-01 00:00+00', '2020-01-31 00:00+00'),
                                        '{\"storage_gb_month\": 0.5, \"million_rows_written\": 2}')",
                None,
                &[],
            )
            .unwrap()
            .map(|row| {
                (
                    row.get::<String>(1).unwrap().unwrap(),
                    row.get::<String>(2).unwrap().unwrap(),
                    row.get::<i64>(3).unwrap().unwrap(),
                    row.get::<String>(4).unwrap().unwrap(),
                    row.get::<String>(5).unwrap().unwrap(),
                    row.get::<i64>(6).unwrap(),
                )
            })
            .collect::<Vec<_>>()
        });
        let expected = |schema: &str, gb: &str, rows: i64, total: &str, cost: &str| {
            (schema.to_string(), gb.to_string(), rows, total.to_string(), cost.to_string(), None::<i64>)
        };
        assert_eq!(
            report,
            vec![
                // (15 days x 1 GiB + 15 days x 0 GiB) / 30 days, until the drop
                expected("ur_dropped", "0.500000", 10, "0.2500", r#"{"storage": 0.2500, "rows_written": 0.0000}"#),
                // 6 days x 2 GiB / 30 days
                expected("ur_late", "0.400000", 0, "0.2000", r#"{"storage": 0.2000, "rows_written": 0.0000}"#),
                // (15 days x 1 GiB + 15 days x 3 GiB) / 30 days; rows of the snapshot taken in the period only
                expected("ur_steady", "2.000000", 1500, "1.0030", r#"{"storage": 1.0000, "rows_written": 0.0030}"#),
            ],
            "ur_new was created after the period and has no snapshot in it: not billed"
        );

        let error = |args: &str| retention_error(&format!("SELECT * FROM tenant.usage_report({args})"));
        assert_eq!(error("tstzrange('2020-01-01', NULL), '{}'"), Some("22023".into()));
        assert_eq!(error("tstzrange('2020-01-01', '2020-01-01'), '{}'"), Some("22023".into()));
        assert_eq!(error("NULL, '{}'"), Some("22023".into()));
        assert_eq!(error("tstzrange('2020-01-01', '2020-02-01'), '[]'"), Some("22023".into()));
        assert_eq!(error("tstzrange('2020-01-01', '2020-02-01'), '{\"storage\": 1}'"), Some("22023".into()));
        assert_eq!(error("tstzrange('2020-01-01', '2020-02-01'), '{\"storage_gb_month\": -1}'"), Some("22023".into()));
        assert_eq!(
            error("tstzrange('2020-01-01', '2020-02-01'), '{\"storage_gb_month\": \"1\"}'"),
            Some("22023".into())
        );
    }

    #[pg_test]
    fn limits_are_checked_against_the_bounds_and_applied_by_set_context() {
        let (_, _, id, _) = create("a0a00000-0000-4000-8000-000000000001", Some("lim_a"));
        let id = id.unwrap();
        let set = |limits: &str| retention_error(&format!("SELECT tenant.set_limits('{id}', '{limits}')"));
        assert_eq!(set(r#"{"statement_timeout": "5 parsecs"}"#), Some("22023".into()));
        assert_eq!(
            set(r#"{"statement_timeout": "0"}"#),
            Some("22023".into()),
            "turning the timeout off is out of bounds"
        );
        assert_eq!(set(r#"{"statement_timeout": "2h"}"#), Some("22023".into()), "above the one-hour bound");
        assert_eq!(set(r#"{"work_mem": "4GB"}"#), Some("22023".into()));
        assert_eq!(set(r#"{"max_transactions": 0}"#), Some("22023".into()));
        assert_eq!(set(r#"{"max_transactions": 2.5}"#), Some("22023".into()));
        assert_eq!(set(r#"{"search_path": "x"}"#), Some("22023".into()), "only the listed settings");
        assert_eq!(set(r#"[1]"#), Some("22023".into()));
        assert_eq!(
            retention_error("SELECT tenant.set_limits('a0a00000-0000-4000-8000-00000000ffff', '{}')"),
            Some("42704".into())
        );
        assert_eq!(count_of("SELECT count(*) FROM tenant.institution_limits"), 0, "nothing stored by refused calls");

        Spi::run(&format!(
        "SELECT tenant.set_limits('{id}', '{{\"statement_timeout\": \"5s\", \"lock_timeout\": 250, \"work_mem\": \"16MB\",
                                          \"idle_in_transaction_session_timeout\": \"1min\", \"max_transactions\": 3}}')"
    ))
    .unwrap();
        let before = one::<String>("SELECT current_setting('work_mem')");
        Spi::run("SELECT tenant.set_context('a0a00000-0000-4000-8000-000000000001')").unwrap();
        assert_eq!(
            one::<String>(
                "SELECT concat_ws(' ', current_setting('statement_timeout'), current_setting('lock_timeout'),
                              current_setting('work_mem'), current_setting('idle_in_transaction_session_timeout'))"
            ),
            Some("5s 250ms 16MB 1min".into())
        );
        Spi::run("RESET ROLE; RESET work_mem").unwrap();
        assert_eq!(one::<String>("SELECT current_setting('work_mem')"), before);

        // A superuser narrows the bounds: a value allowed before is refused.
        Spi::run("INSERT INTO tenant.limit_bounds (setting, min_value, max_value) VALUES ('work_mem', 64, 8192)")
            .unwrap();
        assert_eq!(set(r#"{"work_mem": "16MB"}"#), Some("22023".into()));
        assert_eq!(set(r#"{"work_mem": "8MB"}"#), None);

        // Removing them: set_context changes nothing any more.
        Spi::run(&format!("SELECT tenant.set_limits('{id}', NULL)")).unwrap();
        assert_eq!(count_of("SELECT count(*) FROM tenant.institution_limits"), 0);
    }

    #[pg_test]
    fn row_limits_refuse_the_insert_over_the_limit_and_follow_deletes() {
        Spi::run("CREATE TABLE tenant_template.rl_users (id int, name text)").unwrap();
        let (_, _, id, _) = create("a1a10000-0000-4000-8000-000000000001", Some("rl_one"));
        let id = id.unwrap();
        Spi::run("INSERT INTO rl_one.rl_users SELECT i, 'u' || i FROM generate_series(1, 3) i").unwrap();
        let limit = |args: &str| retention_error(&format!("SELECT tenant.set_row_limit({args})"));
        assert_eq!(limit(&format!("'{id}', 'rl_users', -1")), Some("22023".into()));
        assert_eq!(limit(&format!("'{id}', NULL, 5")), Some("22004".into()));
        assert_eq!(limit(&format!("'{id}', 'rl_nothing', 5")), Some("42P01".into()));
        assert_eq!(limit("'a1a10000-0000-4000-8000-00000000ffff', 'rl_users', 5"), Some("42704".into()));
        assert_eq!(limit(&format!("'{id}', 'rl_users', 5")), None);
        assert_eq!(count_of("SELECT row_count FROM tenant.row_limits"), 3, "the rows already there are counted");

        let insert = |rows: i64| {
            retention_error(&format!("INSERT INTO rl_one.rl_users SELECT i, 'x' FROM generate_series(1, {rows}) i"))
        };
        assert_eq!(insert(3), Some("53400".into()), "3 + 3 > 5: the whole statement is refused");
        assert_eq!(insert(2), None, "exactly at the limit");
        assert_eq!(insert(1), Some("53400".into()), "the 6th row");
        Spi::run("DELETE FROM rl_one.rl_users WHERE id = 1").unwrap();
        assert_eq!(insert(1), None, "a deleted row makes room");
        Spi::run("TRUNCATE rl_one.rl_users").unwrap();
        assert_eq!(insert(5), None);
        assert_eq!(count_of("SELECT count(*) FROM rl_one.rl_users"), 5);
        assert_eq!(count_of("SELECT row_count FROM tenant.row_limits"), 5);

        // Removing the limit removes the triggers and the counter.
        assert_eq!(limit(&format!("'{id}', 'rl_users', NULL")), None);
        assert_eq!(insert(10), None);
        assert_eq!(count_of("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'rl_one.rl_users'::regclass"), 0);
        assert_eq!(count_of("SELECT count(*) FROM tenant.row_limits"), 0);
    }

    #[pg_test]
    fn a_column_mapping_names_existing_tables_and_columns_and_can_be_removed() {
        Spi::run(
            "CREATE TABLE tenant_template.cm_notes (id int PRIMARY KEY, body text);
             CREATE TABLE public.cm_shared (id int PRIMARY KEY, institution_id uuid NOT NULL, content text);
             CREATE TABLE public.cm_plain (id int PRIMARY KEY, institution_id uuid NOT NULL);",
        )
        .unwrap();
        Spi::run("SELECT tenant.enable_shared_table_isolation('public.cm_shared')").unwrap();
        let map = |args: &str| retention_error(&format!("SELECT tenant.set_column_mapping({args})"));
        assert_eq!(map("NULL"), Some("22004".into()));
        assert_eq!(map("'public.cm_nowhere'"), Some("42P01".into()));
        assert_eq!(map("'public.cm_plain', 'cm_notes'"), Some("55000".into()));
        assert_eq!(map("'public.cm_shared', 'cm_nowhere'"), Some("42P01".into()));
        assert_eq!(map("'public.cm_shared', 'cm_notes', '{\"body\": \"nope\"}'"), Some("42703".into()));
        assert_eq!(map("'public.cm_shared', 'cm_notes', '{\"nope\": \"content\"}'"), Some("42703".into()));
        assert_eq!(map("'public.cm_shared', 'cm_notes', '{\"body\": 1}'"), Some("22023".into()));
        assert_eq!(count_of("SELECT count(*) FROM tenant.shared_table_mappings"), 0);
        assert_eq!(
            one::<String>(
                "SELECT tenant.set_column_mapping('public.cm_shared', 'cm_notes', '{\"body\": \"content\"}')"
            ),
            Some("shared table \"public.cm_shared\" maps to tenant_template.cm_notes (body <- content)".into())
        );
        assert_eq!(count_of("SELECT count(*) FROM tenant.shared_table_mappings WHERE table_name = 'cm_notes'"), 1);
        assert_eq!(
            one::<String>("SELECT tenant.set_column_mapping('public.cm_shared')"),
            Some("shared table \"public.cm_shared\" maps to the template by names".into())
        );
        assert_eq!(count_of("SELECT count(*) FROM tenant.shared_table_mappings"), 0);
    }
}
