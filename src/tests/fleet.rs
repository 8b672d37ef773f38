//! Fleet work (issue 15): run_in_each in one transaction. Roles, commits per
//! institution, resume after a kill and pg_cron are in pgrx-tests/tests/fleet_*.rs.

#[pgrx::pg_schema]
#[allow(unused_imports)]
pub(crate) mod tests {
    use crate::core::errors::sqlstate_of;
    use crate::tests::*;
    use pgrx::prelude::*;

    /// Two institutions built from a template with a `members` table, each with
    /// one row naming its schema; returns their institution ids.
    fn fleet_of_two(first: &str, second: &str) -> (String, String) {
        Spi::run("CREATE TABLE IF NOT EXISTS tenant_template.members (id int PRIMARY KEY, name text)").unwrap();
        let mut ids = Vec::new();
        for schema in [first, second] {
            let id = uuid::Uuid::new_v4().to_string();
            let (status, message, _, _) = create(&id, Some(schema));
            assert_eq!(status, "SUCCESS", "{message}");
            Spi::run(&format!("INSERT INTO {schema}.members VALUES (1, '{schema}')")).unwrap();
            ids.push(id);
        }
        (ids[0].clone(), ids[1].clone())
    }

    /// run_in_each's rows for the given institutions: (schema, status, row_count, result, sqlstate).
    fn run_in(
        statement: &str,
        ids: &[&str],
        extra: &str,
    ) -> Vec<(String, String, Option<i64>, Option<serde_json::Value>, Option<String>)> {
        let list = ids.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT COALESCE(schema_name, institution_id::text), status, row_count, result, sqlstate
           FROM tenant.run_in_each({}, ARRAY[{list}]::uuid[]{extra})",
            pgrx::spi::quote_literal(statement)
        );
        Spi::connect_mut(|c| {
            c.update(&sql, None, &[])
                .unwrap()
                .map(|row| {
                    (
                        row.get::<String>(1).unwrap().unwrap(),
                        row.get::<String>(2).unwrap().unwrap(),
                        row.get::<i64>(3).unwrap(),
                        row.get::<pgrx::JsonB>(4).unwrap().map(|j| j.0),
                        row.get::<String>(5).unwrap(),
                    )
                })
                .collect()
        })
    }

    #[pg_test]
    fn fleet_run_in_each_returns_each_institutions_rows_as_json() {
        let (a, b) = fleet_of_two("fleet_a", "fleet_b");
        let rows = run_in("SELECT id, name FROM members", &[&a, &b], "");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, "fleet_a");
        assert_eq!(rows[0].1, "SUCCESS");
        assert_eq!(rows[0].2, Some(1));
        assert_eq!(rows[0].3, Some(serde_json::json!([{"id": 1, "name": "fleet_a"}])));
        assert_eq!(rows[1].3, Some(serde_json::json!([{"id": 1, "name": "fleet_b"}])));
        // A statement that returns no rows set: the count of rows it changed, no result.
        let rows = run_in("UPDATE members SET name = name || '!'", &[&a, &b], "");
        assert_eq!(rows[0].2, Some(1));
        assert_eq!(rows[0].3, None);
        assert_eq!(one::<String>("SELECT name FROM fleet_b.members").as_deref(), Some("fleet_b!"));
    }

    #[pg_test]
    fn fleet_one_failing_institution_does_not_stop_the_others() {
        let (a, b) = fleet_of_two("fleet_fa", "fleet_fb");
        Spi::run("DROP TABLE fleet_fa.members").unwrap();
        let rows = run_in("INSERT INTO members VALUES (2, 'new')", &[&a, &b], "");
        assert_eq!((rows[0].1.as_str(), rows[0].4.as_deref()), ("ERROR", Some("42P01")));
        assert_eq!(rows[1].1, "SUCCESS");
        assert_eq!(one::<i64>("SELECT count(*) FROM fleet_fb.members"), Some(2));
        // A statement that fails half-way in an institution leaves nothing there.
        let rows = run_in("INSERT INTO members VALUES (3, 'x'); INSERT INTO members VALUES (1, 'dup')", &[&b], "");
        assert_eq!(rows[0].4.as_deref(), Some("23505"));
        assert_eq!(one::<i64>("SELECT count(*) FROM fleet_fb.members WHERE id = 3"), Some(0));
    }

    #[pg_test]
    fn fleet_the_statement_cannot_reach_another_institution() {
        let (a, _b) = fleet_of_two("fleet_ca", "fleet_cb");
        let rows = run_in("SELECT * FROM fleet_cb.members", &[&a], "");
        assert_eq!((rows[0].1.as_str(), rows[0].4.as_deref()), ("ERROR", Some("42501")));
        let rows = run_in("SELECT current_user::text AS who, current_setting('search_path') AS path", &[&a], "");
        assert_eq!(
            rows[0].3,
            Some(serde_json::json!([{"who": "fleet_ca_owner", "path": "fleet_ca, public, pg_temp"}]))
        );
        // No way out of the restricted operation, and nothing it sets outlives it.
        let rows = run_in("SET ROLE postgres", &[&a], "");
        assert_eq!(rows[0].4.as_deref(), Some("42501"));
        let before = one::<String>("SELECT current_setting('work_mem')");
        let rows = run_in("SET work_mem = '77MB'", &[&a], "");
        assert_eq!(rows[0].1, "SUCCESS");
        assert_eq!(one::<String>("SELECT current_setting('work_mem')"), before);
    }

    #[pg_test]
    fn fleet_parameters_are_bound_never_spliced() {
        let (a, _) = fleet_of_two("fleet_pa", "fleet_pb");
        let rows = run_in(
            "INSERT INTO members VALUES ($1::int, $2) RETURNING name",
            &[&a],
            ", parameters => ARRAY['7', 'x''); DROP TABLE members; --']",
        );
        assert_eq!(rows[0].1, "SUCCESS");
        assert_eq!(rows[0].3, Some(serde_json::json!([{"name": "x'); DROP TABLE members; --"}])));
        assert_eq!(one::<i64>("SELECT count(*) FROM fleet_pa.members"), Some(2));
    }

    #[pg_test]
    fn fleet_a_dry_run_changes_nothing_and_finds_where_the_statement_would_fail() {
        let (a, b) = fleet_of_two("fleet_da", "fleet_db");
        Spi::run("ALTER TABLE fleet_db.members RENAME TO people").unwrap();
        let rows = run_in("DELETE FROM members", &[&a, &b], ", dry_run => true");
        assert_eq!(rows[0].1, "WOULD_RUN");
        assert_eq!((rows[1].1.as_str(), rows[1].4.as_deref()), ("ERROR", Some("42P01")));
        assert_eq!(one::<i64>("SELECT count(*) FROM fleet_da.members"), Some(1));
    }

    #[pg_test]
    fn fleet_institutions_that_are_not_active_or_unknown_are_skipped() {
        let (a, b) = fleet_of_two("fleet_sa", "fleet_sb");
        let schema_id = one::<pgrx::Uuid>(&format!(
            "SELECT id FROM tenant.tenant_schemas WHERE institution_id = '{b}' AND status <> 'DROPPED'"
        ))
        .unwrap();
        Spi::run(&format!("SELECT * FROM tenant.suspend_institution('{schema_id}')")).unwrap();
        let unknown = uuid::Uuid::new_v4().to_string();
        let rows = run_in("DELETE FROM members", &[&a, &b, &unknown], "");
        let statuses: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(statuses, ["SUCCESS", "SKIPPED", "SKIPPED"]);
        assert_eq!(one::<i64>("SELECT count(*) FROM fleet_sb.members"), Some(1));
    }

    #[pg_test]
    fn fleet_transaction_control_and_timeouts_are_reported_per_institution() {
        let (a, b) = fleet_of_two("fleet_ta", "fleet_tb");
        let rows = run_in("COMMIT", &[&a], "");
        assert_eq!(rows[0].4.as_deref(), Some("2D000"));
        let rows = run_in("SELECT pg_sleep(5)", &[&a, &b], ", statement_timeout => '100 ms'");
        assert_eq!(rows.iter().map(|r| r.4.as_deref()).collect::<Vec<_>>(), [Some("57014"), Some("57014")]);
        // The timer is gone: a later statement is not cancelled.
        assert_eq!(one::<i32>("SELECT 1 FROM pg_sleep(0.3)"), Some(1));
    }

    #[pg_test]
    fn fleet_bad_arguments_are_refused() {
        let code = |sql: &str| {
            PgTryBuilder::new(|| {
                Spi::run(sql).unwrap();
                None
            })
            .catch_others(|e| match e {
                pg_sys::panic::CaughtError::PostgresError(r) | pg_sys::panic::CaughtError::ErrorReport(r) => {
                    Some(sqlstate_of(r.sql_error_code()))
                }
                _ => Some("panic".into()),
            })
            .execute()
        };
        assert_eq!(code("SELECT * FROM tenant.run_in_each(NULL)").as_deref(), Some("22004"));
        assert_eq!(code("SELECT * FROM tenant.run_in_each('  ')").as_deref(), Some("22023"));
        assert_eq!(code("SELECT * FROM tenant.run_in_each('SELECT 1', ARRAY[NULL]::uuid[])").as_deref(), Some("22004"));
        assert_eq!(
            code("SELECT * FROM tenant.run_in_each('SELECT 1', config_filter => '[1]')").as_deref(),
            Some("22023")
        );
        assert_eq!(
            code("SELECT * FROM tenant.run_in_each('SELECT 1', statement_timeout => '-1 s')").as_deref(),
            Some("22023")
        );
    }

    #[pg_test]
    fn fleet_a_run_is_logged() {
        let (a, b) = fleet_of_two("fleet_la", "fleet_lb");
        Spi::run("DROP TABLE fleet_lb.members").unwrap();
        run_in("SELECT count(*) FROM members", &[&a, &b], "");
        let logged = one::<pgrx::JsonB>(
            "SELECT metadata FROM tenant.schema_operations WHERE operation_type = 'FLEET_RUN' ORDER BY id DESC LIMIT 1",
        )
        .unwrap()
        .0;
        assert_eq!(logged["success"], 1);
        assert_eq!(logged["error"], 1);
        assert_eq!(logged["statement"], "SELECT count(*) FROM members");
        assert_eq!(logged["errors"][0]["schema_name"], "fleet_lb");
    }

    #[pg_test]
    fn fleet_view_follows_the_registry_and_the_template() {
        let (a, _b) = fleet_of_two("fleet_va", "fleet_vb");
        let made = one::<String>("SELECT tenant.create_fleet_view('members', 'fleet_members_t')").unwrap();
        assert!(made.contains("2 institution(s)"), "{made}");
        let rows = || one::<i64>("SELECT count(*) FROM tenant.fleet_members_t WHERE schema_name LIKE 'fleet_v%'");
        assert_eq!(rows(), Some(2));
        assert_eq!(
            one::<String>(&format!(
                "SELECT name FROM tenant.fleet_members_t WHERE institution_id = '{a}' AND schema_name = 'fleet_va'"
            ))
            .as_deref(),
            Some("fleet_va")
        );
        let schema_id =
            one::<pgrx::Uuid>("SELECT id FROM tenant.tenant_schemas WHERE schema_name = 'fleet_va'").unwrap();
        Spi::run(&format!("SELECT * FROM tenant.suspend_institution('{schema_id}')")).unwrap();
        assert_eq!(rows(), Some(1));
        Spi::run(&format!("SELECT * FROM tenant.activate_institution('{schema_id}')")).unwrap();
        assert_eq!(rows(), Some(2));
        // A new institution joins the view in the transaction that creates it.
        let (status, message, _, _) = create(&uuid::Uuid::new_v4().to_string(), Some("fleet_vc"));
        assert_eq!(status, "SUCCESS", "{message}");
        Spi::run("INSERT INTO fleet_vc.members VALUES (1, 'fleet_vc')").unwrap();
        assert_eq!(rows(), Some(3));
        // A column the template gains shows as NULL until the institution has it.
        Spi::run("ALTER TABLE tenant_template.members ADD COLUMN grade int").unwrap();
        assert_eq!(one::<i64>("SELECT tenant.refresh_fleet_views()"), Some(1));
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM tenant.fleet_members_t WHERE grade IS NULL AND schema_name LIKE 'fleet_v%'"
            ),
            Some(3)
        );
        // Nothing changed: nothing rebuilt.
        assert_eq!(one::<i64>("SELECT tenant.refresh_fleet_views()"), Some(0));
    }

    /// Whether the CREATE of `schema` claimed a spare of the warm pool (its log row says so).
    fn claimed_from_pool(schema: &str) -> bool {
        Spi::get_one_with_args::<bool>(
            "SELECT (metadata->>'from_pool')::boolean FROM tenant.schema_operations
              WHERE operation_type = 'CREATE' AND metadata->>'schema_name' = $1",
            &[schema.into()],
        )
        .ok()
        .flatten()
            == Some(true)
    }

    /// The follow-up trigger (C, src/ops/registry_follow.rs) finds the fleet
    /// view and rebuilds it when a warm-pool spare is claimed.
    #[pg_test]
    fn fleet_view_follows_a_spare_claimed_from_the_warm_pool() {
        fleet_of_two("fleet_pa", "fleet_pb");
        let made = one::<String>("SELECT tenant.create_fleet_view('members', 'fleet_members_p')").unwrap();
        assert!(made.contains("2 institution(s)"), "{made}");
        assert_eq!(one::<String>("SELECT status FROM tenant.add_spare_schema()"), Some("SUCCESS".into()));
        let (status, message, _, _) = create(&uuid::Uuid::new_v4().to_string(), Some("fleet_pc"));
        assert_eq!(status, "SUCCESS", "{message}");
        assert!(claimed_from_pool("fleet_pc"), "fleet_pc was not claimed from the warm pool");
        Spi::run("INSERT INTO fleet_pc.members VALUES (1, 'fleet_pc')").unwrap();
        assert_eq!(
            one::<String>("SELECT name FROM tenant.fleet_members_p WHERE schema_name = 'fleet_pc'").as_deref(),
            Some("fleet_pc")
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM tenant.fleet_members_p WHERE schema_name LIKE 'fleet_p%'"),
            Some(3)
        );
    }

    /// The reference-data trigger (C) reads NEW.id of the claim's UPDATE and
    /// syncs the declared source into the claimed spare.
    #[pg_test]
    fn fleet_reference_data_reaches_a_spare_claimed_from_the_warm_pool() {
        Spi::run(
            "CREATE TABLE public.fleet_ref_catalog (code text PRIMARY KEY, title text NOT NULL);
             INSERT INTO public.fleet_ref_catalog VALUES ('MATH101', 'Algebra'), ('PHYS101', 'Mechanics');
             CREATE TABLE tenant_template.fleet_ref_courses (code text PRIMARY KEY, title text);
             SELECT tenant.reference_declare('public.fleet_ref_catalog'::regclass::oid, 'fleet_ref_courses', 'code', 'report');",
        )
        .unwrap();
        assert_eq!(one::<String>("SELECT status FROM tenant.add_spare_schema()"), Some("SUCCESS".into()));
        let (status, message, _, _) = create(&uuid::Uuid::new_v4().to_string(), Some("fleet_rc"));
        assert_eq!(status, "SUCCESS", "{message}");
        assert!(claimed_from_pool("fleet_rc"), "fleet_rc was not claimed from the warm pool");
        assert_eq!(
            one::<String>("SELECT string_agg(title, ',' ORDER BY code) FROM fleet_rc.fleet_ref_courses").as_deref(),
            Some("Algebra,Mechanics")
        );
    }

    #[pg_test]
    fn fleet_follow_up_triggers_refuse_to_be_called_as_functions() {
        assert_eq!(sqlstate_of_statement("SELECT tenant.fleet_views_follow()").as_deref(), Some("39P01"));
        assert_eq!(sqlstate_of_statement("SELECT tenant.reference_follow_new()").as_deref(), Some("39P01"));
    }

    #[pg_test]
    fn fleet_last_access_is_recorded_at_most_once_a_minute_per_connection() {
        let (a, _) = fleet_of_two("fleet_xa", "fleet_xb");
        let last = || {
            one::<bool>("SELECT last_accessed_at IS NOT NULL FROM tenant.tenant_schemas WHERE schema_name = 'fleet_xa'")
        };
        assert_eq!(last(), Some(false));
        Spi::run(&format!("SELECT * FROM tenant.enter_context('{a}')")).unwrap();
        assert_eq!(last(), Some(true));
        assert_eq!(
            one::<bool>(
                "SELECT idle_for < interval '1 minute' FROM tenant.idle_institutions WHERE schema_name = 'fleet_xa'"
            ),
            Some(true)
        );
        // Within the minute this connection does not write again.
        Spi::run("UPDATE tenant.tenant_schemas SET last_accessed_at = NULL WHERE schema_name = 'fleet_xa'").unwrap();
        Spi::run(&format!("SELECT * FROM tenant.enter_context('{a}')")).unwrap();
        assert_eq!(last(), Some(false));
    }
}
