//! Health, monitoring views, usage snapshots, optimize and pg_cron setup
//! (included into the `tests` module after tests_integrity.rs).

#[pgrx::pg_schema]
#[allow(unused_imports)]
pub(crate) mod tests {
    use crate::tests::*;
    use pgrx::prelude::*;

    fn health_of(id: &str) -> (String, String) {
        Spi::connect_mut(|c| {
            let row = c
                .update(
                    &format!("SELECT health, array_to_string(failing, ',') FROM tenant.institution_health('{id}')"),
                    None,
                    &[],
                )
                .unwrap()
                .first();
            (row.get::<String>(1).unwrap().unwrap(), row.get::<String>(2).unwrap().unwrap_or_default())
        })
    }

    #[pg_test]
    fn health_is_healthy_degraded_or_unhealthy_with_the_checks_named() {
        fill_template();
        let id = created("e1e1e1e1-0000-4000-8000-000000000001", "hale");
        Spi::run("SET LOCAL tenant_control.health_backup_max_age = '2d'").unwrap();
        // Never backed up: degraded.
        assert_eq!(health_of(&id), ("degraded".into(), "backup_age".into()));
        Spi::run(&format!("UPDATE tenant.tenant_schemas SET last_backup = now() - interval '1 day' WHERE id = '{id}'"))
            .unwrap();
        assert_eq!(health_of(&id), ("healthy".into(), "".into()));
        Spi::run("SET LOCAL tenant_control.health_backup_max_age = '12h'").unwrap();
        assert_eq!(health_of(&id), ("degraded".into(), "backup_age".into()));
        Spi::run("SET LOCAL tenant_control.health_backup_max_age = 0").unwrap();
        assert_eq!(health_of(&id), ("healthy".into(), "".into()));
        // Quota: the enforcement's own state, WARNING is degraded and EXCEEDED unhealthy.
        let used = one::<i64>(&format!("SELECT tenant.refresh_storage('{id}')")).unwrap();
        Spi::run(&format!("SELECT * FROM tenant.set_quota('{id}', '{}')", used + used / 20)).unwrap();
        assert_eq!(health_of(&id), ("degraded".into(), "quota".into()));
        Spi::run(&format!("SELECT * FROM tenant.set_quota('{id}', '{used}')")).unwrap();
        assert_eq!(health_of(&id), ("unhealthy".into(), "quota".into()));
        Spi::run(&format!("SELECT * FROM tenant.set_quota('{id}', NULL)")).unwrap();
        // RLS switched off, a table gone, the role locked out while ACTIVE: unhealthy, each named.
        Spi::run("ALTER TABLE hale.students NO FORCE ROW LEVEL SECURITY; DROP TABLE hale.tenant_template_settings; REVOKE USAGE ON SCHEMA hale FROM hale_owner").unwrap();
        assert_eq!(health_of(&id), ("unhealthy".into(), "reachable,tables_present,row_level_security".into()));
        // A suspended tenant is degraded, and its role must not reach the schema.
        Spi::run("GRANT USAGE ON SCHEMA hale TO hale_owner").unwrap();
        Spi::run(&format!("SELECT * FROM tenant.suspend_institution('{id}')")).unwrap();
        Spi::run("GRANT USAGE ON SCHEMA hale TO hale_owner").unwrap();
        assert_eq!(health_of(&id).1, "status,reachable,tables_present,row_level_security");
        Spi::run("DROP SCHEMA hale CASCADE").unwrap();
        assert_eq!(health_of(&id), ("unhealthy".into(), "status,schema_present".into()));
        assert_eq!(
            one::<String>(&format!(
                "SELECT health || '/' || failing::text FROM tenant.fleet_health WHERE schema_id = '{id}'"
            )),
            Some("unhealthy/{status,schema_present}".into())
        );
        assert_eq!(one::<String>("SELECT health FROM tenant.fleet_health_summary"), Some("unhealthy".into()));
    }

    #[pg_test]
    fn fleet_health_checks_every_tenant_at_once_as_each_alone() {
        // fleet_health checks all tenants in one statement (tenant.health_check_rows):
        // each tenant must get its own verdict, the same as institution_health's.
        fill_template();
        created("e1e1e1e1-0000-4000-8000-000000000011", "fleet_a");
        created("e1e1e1e1-0000-4000-8000-000000000012", "fleet_b");
        created("e1e1e1e1-0000-4000-8000-000000000013", "fleet_c");
        let d = created("e1e1e1e1-0000-4000-8000-000000000014", "fleet_d");
        Spi::run("SET LOCAL tenant_control.health_backup_max_age = 0").unwrap();
        Spi::run(
            "ALTER TABLE fleet_b.students NO FORCE ROW LEVEL SECURITY; DROP TABLE fleet_b.tenant_template_settings",
        )
        .unwrap();
        Spi::run("DROP SCHEMA fleet_c CASCADE").unwrap();
        Spi::run(&format!("SELECT * FROM tenant.suspend_institution('{d}')")).unwrap();
        assert_eq!(
            one::<String>(
                "SELECT string_agg(format('%s:%s:%s', schema_name, health, array_to_string(failing, ',')), ' ' ORDER BY schema_name)
                   FROM tenant.fleet_health WHERE schema_name LIKE 'fleet\\_%'"
            ),
            Some(
                "fleet_a:healthy: fleet_b:unhealthy:tables_present,row_level_security fleet_c:unhealthy:schema_present \
                 fleet_d:degraded:status"
                    .into()
            )
        );
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM tenant.fleet_health f, LATERAL tenant.institution_health(f.schema_id) h
                  WHERE (f.schema_name, f.health, f.failing, f.checks) IS DISTINCT FROM (h.schema_name, h.health, h.failing, h.checks)"
            ),
            Some(0)
        );
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM tenant.fleet_health f WHERE f.schema_name = 'fleet_c' AND f.checks ? 'quota'"
            ),
            Some(0),
            "a tenant without its schema has its first two checks only"
        );
    }

    #[pg_test]
    fn monitoring_views_show_sizes_per_table_and_tenant() {
        fill_template();
        let id = created("e1e1e1e1-0000-4000-8000-000000000002", "watched");
        Spi::run("INSERT INTO watched.students (name, age, email) SELECT 'student ' || i, 20, repeat('x', 3000) || i FROM generate_series(1, 50) i").unwrap();
        let row = |sql: &str| one::<String>(sql).unwrap();
        assert_eq!(
        row("SELECT format('%s/%s/%s/%s', count(*), bool_and(total_bytes = table_bytes + index_bytes + toast_bytes),
                           bool_or(toast_bytes > 0), bool_or(index_bytes > 0))
               FROM tenant.table_stats WHERE schema_name = 'watched'"),
        "5/t/t/t"
    );
        assert_eq!(
        row(&format!("SELECT format('%s/%s', s.tables, s.total_bytes = (SELECT sum(total_bytes) FROM tenant.table_stats WHERE schema_id = s.schema_id))
                        FROM tenant.tenant_stats s WHERE s.schema_id = '{id}'")),
        "4/t"
    );
        // Snapshots: one row per tenant per call, each period starting at the previous snapshot.
        let snapshot = || {
            Spi::connect_mut(|c| {
                let row =
                    c.update("SELECT status, tenants FROM tenant.record_usage_snapshot()", None, &[]).unwrap().first();
                (row.get::<String>(1).unwrap().unwrap(), row.get::<i64>(2).unwrap().unwrap())
            })
        };
        assert_eq!(snapshot().0, "SUCCESS");
        assert_eq!(row(&format!("SELECT format('%s/%s', count(*), bool_and(period_start IS NULL AND storage_bytes > 0 AND table_count = 4))
                              FROM tenant.usage_snapshots WHERE schema_id = '{id}'")), "1/t");
        assert_eq!(
            one::<bool>(&format!("SELECT snapshot_at IS NOT NULL FROM tenant.tenant_stats WHERE schema_id = '{id}'")),
            Some(true)
        );
        assert!(snapshot().1 >= 1);
        assert_eq!(row(&format!("SELECT format('%s/%s', count(*), count(period_start)) FROM tenant.usage_snapshots WHERE schema_id = '{id}'")), "2/1");
        assert_eq!(
            row("SELECT string_agg(status, ',') FROM tenant.schema_operations WHERE operation_type = 'USAGE_SNAPSHOT'"),
            "COMPLETED,COMPLETED"
        );
    }

    #[pg_test]
    fn optimize_analyzes_and_hands_out_vacuum_and_reindex_statements() {
        fill_template();
        let id = created("e1e1e1e1-0000-4000-8000-000000000003", "tidy");
        Spi::run("INSERT INTO tidy.courses (code) SELECT 'c' || i FROM generate_series(1, 100) i").unwrap();
        let rows: Vec<(String, String)> = Spi::connect_mut(|c| {
            c.update(&format!("SELECT kind, statement FROM tenant.optimize_institution_schema('{id}')"), None, &[])
                .unwrap()
                .map(|r| (r.get::<String>(1).unwrap().unwrap(), r.get::<String>(2).unwrap().unwrap()))
                .collect()
        });
        let kinds: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kinds, vec!["VACUUM", "REINDEX", "CRON", "CRON"]);
        assert_eq!(
            rows[0].1,
            "VACUUM tidy.course_counts, tidy.courses, tidy.enrolments, tidy.students, tidy.tenant_template_settings"
        );
        assert_eq!(rows[1].1, "REINDEX SCHEMA CONCURRENTLY tidy");
        assert_eq!(
            rows[2].1,
            format!("SELECT cron.schedule('tenant_control vacuum tidy', '30 3 * * 0', '{}')", rows[0].1)
        );
        // ANALYZE ran inside the function: the planner now knows the rows.
        assert_eq!(one::<f32>("SELECT reltuples FROM pg_class WHERE oid = 'tidy.courses'::regclass"), Some(100.0));
        assert_eq!(
            one::<bool>(&format!("SELECT last_optimized IS NOT NULL FROM tenant.tenant_schemas WHERE id = '{id}'")),
            Some(true)
        );
        assert_eq!(
            one::<String>(&format!(
                "SELECT status FROM tenant.schema_operations WHERE operation_type = 'OPTIMIZE' AND schema_id = '{id}'"
            )),
            Some("COMPLETED".into())
        );
    }

    #[pg_test]
    fn without_pg_cron_here_scheduling_returns_the_statements_for_the_cron_database() {
        let rows: Vec<(String, bool, String)> = Spi::connect_mut(|c| {
            c.update(
                "SELECT job_name, scheduled, statement FROM tenant.schedule_maintenance(maintenance => NULL)",
                None,
                &[],
            )
            .unwrap()
            .map(|r| {
                (
                    r.get::<String>(1).unwrap().unwrap(),
                    r.get::<bool>(2).unwrap().unwrap(),
                    r.get::<String>(3).unwrap().unwrap(),
                )
            })
            .collect()
        });
        let db = one::<String>("SELECT current_database()::text").unwrap();
        let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        assert_eq!(
            names,
            [
                "quota_refresh",
                "usage_snapshot",
                "integrity_check",
                "backup_retention",
                "fleet_backup",
                "data_retention",
                "history",
                "move_resolver"
            ]
            .map(|j| format!("tenant_control {db}: {j}"))
        );
        assert!(rows.iter().all(|r| !r.1));
        assert_eq!(
        rows[3].2,
        format!("SELECT cron.schedule_in_database('tenant_control {db}: backup_retention', '0 3 * * *', 'CALL tenant.cleanup_backups()', '{db}')")
    );
        // The fleet backup runs nightly, before retention removes old backups.
        assert_eq!(
            rows[4].2,
            format!("SELECT cron.schedule_in_database('tenant_control {db}: fleet_backup', '0 1 * * *', 'CALL tenant.backup_all()', '{db}')")
        );
        // Data retention runs daily, after the night's backups.
        assert_eq!(
            rows[5].2,
            format!("SELECT cron.schedule_in_database('tenant_control {db}: data_retention', '15 4 * * *', 'CALL tenant.apply_retention()', '{db}')")
        );
        // History retention runs daily and keeps 13 months unless told otherwise.
        assert_eq!(
            rows[6].2,
            format!("SELECT cron.schedule_in_database('tenant_control {db}: history', '45 4 * * *', 'CALL tenant.maintain_history(''1 year 1 mon'')', '{db}')")
        );
    }

    #[pg_test(error = "pg_stat_statements is not installed in database pgrx_tests")]
    fn slow_queries_say_when_pg_stat_statements_is_missing() {
        Spi::run("SELECT * FROM tenant.slow_queries()").unwrap();
    }

    #[pg_test]
    fn a_scheduled_job_failure_is_logged_with_its_sqlstate() {
        Spi::run("SELECT tenant.note_job_failure('INTEGRITY_CHECK', NULL, 'integrity check (scheduled)', '55P03', 'lock timeout')").unwrap();
        assert_eq!(
        one::<String>("SELECT format('%s/%s/%s', status, error_sqlstate, error_message) FROM tenant.schema_operations WHERE operation_type = 'INTEGRITY_CHECK'"),
        Some("FAILED/55P03/lock timeout [SQLSTATE 55P03]".into())
    );
        // Only the scheduled jobs' operation types: anything else is 22023.
        Spi::run(
            "DO $$ BEGIN
             PERFORM tenant.note_job_failure('DROP', NULL, 'x', '55P03', 'x');
             RAISE EXCEPTION 'not refused';
         EXCEPTION WHEN invalid_parameter_value THEN NULL;
         END $$",
        )
        .unwrap();
    }
}
