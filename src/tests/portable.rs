//! `#[pg_test]` unit tests: the portable institution (issue 14). The fleet
//! backup commits per institution, so its behaviour is tested on a real
//! cluster in pgrx-tests/tests/portable_fleet_backup.rs; here, what fails
//! before the first commit.

#[pgrx::pg_schema]
#[allow(unused_imports)]
pub(crate) mod tests {
    use crate::tests::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn fleet_backup_refuses_a_negative_or_null_age() {
        for age in ["'-1 day'::interval", "NULL"] {
            let refused = Spi::run(&format!(
                "DO $$ BEGIN
                 CALL tenant.backup_all({age});
                 RAISE EXCEPTION 'not refused';
             EXCEPTION WHEN invalid_parameter_value THEN NULL;
             END $$"
            ));
            assert!(refused.is_ok(), "backup_all({age}): {refused:?}");
        }
    }

    #[pg_test]
    fn a_scheduled_backup_failure_is_logged_as_a_failed_backup() {
        Spi::run("SELECT tenant.note_job_failure('BACKUP', NULL, 'back up institution schema (scheduled)', '55P03', 'lock timeout')")
        .unwrap();
        assert_eq!(
        one::<String>("SELECT format('%s/%s', status, error_sqlstate) FROM tenant.schema_operations WHERE operation_type = 'BACKUP'"),
        Some("FAILED/55P03".into())
    );
    }

    #[pg_test]
    fn a_drill_restores_a_live_institutions_backup_beside_it_out_of_every_tenants_reach() {
        let id = rich_tenant("b0000000-0000-4000-8000-0000000000d1", "dr_live");
        let (status, message, backup_id, _) = take_backup(&id, true);
        assert_eq!(status, "SUCCESS", "{message}");
        let backup_id = backup_id.unwrap();
        let backup: String =
            one(&format!("SELECT backup_schema FROM tenant.backups WHERE backup_id = '{backup_id}'")).unwrap();
        // The live institution moves on after the backup.
        Spi::run("DELETE FROM dr_live.children WHERE id <= 5").unwrap();

        let (status, message, _, _) = status_row(&format!(
        "SELECT status, message, schema_id::text, sqlstate FROM tenant.restore_institution_schema('{backup_id}', 'dr_drill')"
    ));
        assert_eq!(status, "SUCCESS", "{message}");
        assert!(message.contains("drill schema \"dr_drill\""), "{message}");
        // Listed as a verified drill of the institution; the live schema is untouched.
        let drill_id: String = one(&format!(
        "SELECT backup_id::text FROM tenant.backups
          WHERE backup_schema = 'dr_drill' AND reason = 'DRILL' AND verified AND schema_id = '{id}' AND row_count = 119"
    ))
        .expect("a verified DRILL row in the catalogue");
        assert_eq!(
            one::<String>(&format!("SELECT schema_name FROM tenant.tenant_schemas WHERE id = '{id}'")),
            Some("dr_live".into())
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM dr_live.children"), Some(34));
        // The drill holds the backup's rows, as text row for row (types differ by schema).
        for table in ["parents", "children", "audit"] {
            assert_eq!(
            one::<i64>(&format!(
                "SELECT (SELECT count(*) FROM (SELECT d::text FROM dr_drill.{table} d EXCEPT ALL SELECT b::text FROM {backup}.{table} b) x)
                      + (SELECT count(*) FROM (SELECT b::text FROM {backup}.{table} b EXCEPT ALL SELECT d::text FROM dr_drill.{table} d) x)"
            )),
            Some(0),
            "{table}"
        );
        }
        assert_eq!(one::<i64>("SELECT count(*) FROM dr_drill.children"), Some(39));
        // Its functions are bound to the drill, not to the live schema.
        assert_eq!(
        one::<bool>("SELECT 'search_path=dr_drill' = ANY (proconfig) FROM pg_proc WHERE oid = 'dr_drill.log_child'::regproc"),
        Some(true)
    );

        // No tenant role reaches it: its role has no members, nobody but superusers USAGE.
        assert_eq!(
        one::<i64>("SELECT count(*) FROM pg_auth_members m JOIN tenant.schema_backups b ON m.roleid = b.backup_role WHERE b.backup_schema = 'dr_drill'"),
        Some(0)
    );
        for role in ["dr_live_owner", "tenant_control_app"] {
            assert_eq!(
                one::<bool>(&format!("SELECT has_schema_privilege('{role}', 'dr_drill', 'USAGE')")),
                Some(false),
                "{role}"
            );
        }
        Spi::run(
            "DO $$ BEGIN
             SET LOCAL ROLE dr_live_owner;
             PERFORM count(*) FROM dr_drill.parents;
             RAISE EXCEPTION 'the tenant read the drill';
         EXCEPTION WHEN insufficient_privilege THEN RESET ROLE;
         END $$",
        )
        .unwrap();

        // The integrity check knows the drill and its role for what they are.
        let drill_role: String =
            one(&format!("SELECT backup_role::text FROM tenant.schema_backups WHERE id = '{drill_id}'")).unwrap();
        assert_eq!(
        one::<i64>(&format!(
            "SELECT count(*) FROM tenant.check_integrity() c
              WHERE c.object LIKE '%dr_drill%' OR c.detail LIKE '%dr_drill%' OR c.object LIKE '%{drill_role}%' OR c.detail LIKE '%{drill_role}%'"
        )),
        Some(0)
    );

        // The name is taken now; another drill needs another name.
        assert_eq!(
            one::<String>(&format!(
                "SELECT sqlstate FROM tenant.restore_institution_schema('{backup_id}', 'dr_drill')"
            )),
            Some("42P06".into())
        );

        // remove_backup removes it: schema, role and catalogue row.
        assert_eq!(
            one::<String>(&format!("SELECT status FROM tenant.remove_backup('{drill_id}')")),
            Some("SUCCESS".into())
        );
        assert_eq!(one::<bool>("SELECT to_regnamespace('dr_drill') IS NULL"), Some(true));
        assert_eq!(one::<bool>(&format!("SELECT to_regrole('{drill_role}') IS NULL")), Some(true));
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM tenant.schema_backups WHERE id = '{drill_id}'")), Some(0));
        // The backup it came from stays.
        assert_eq!(
            one::<i64>(&format!("SELECT count(*) FROM tenant.schema_backups WHERE id = '{backup_id}'")),
            Some(1)
        );
    }

    #[pg_test]
    fn a_drill_of_a_backup_changed_since_it_was_taken_fails_and_leaves_nothing() {
        let id = rich_tenant("b0000000-0000-4000-8000-0000000000d2", "dr_tampered");
        let (status, message, backup_id, _) = take_backup(&id, true);
        assert_eq!(status, "SUCCESS", "{message}");
        let backup_id = backup_id.unwrap();
        let backup: String =
            one(&format!("SELECT backup_schema FROM tenant.backups WHERE backup_id = '{backup_id}'")).unwrap();
        // Same row count, different content: only the hashes can tell.
        Spi::run(&format!("UPDATE {backup}.audit SET what = 'forged' WHERE id = (SELECT min(id) FROM {backup}.audit)"))
            .unwrap();
        let roles_before = one::<i64>("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'tc\\_backup\\_%'");
        let (status, message, _, sqlstate) = status_row(&format!(
        "SELECT status, message, schema_id::text, sqlstate FROM tenant.restore_institution_schema('{backup_id}', 'dr_forged')"
    ));
        assert_eq!((status.as_str(), sqlstate.as_deref()), ("ERROR", Some("XX001")), "{message}");
        assert!(message.contains("\"audit\""), "{message}");
        assert_eq!(one::<bool>("SELECT to_regnamespace('dr_forged') IS NULL"), Some(true));
        assert_eq!(one::<i64>("SELECT count(*) FROM tenant.schema_backups WHERE reason = 'DRILL'"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'tc\\_backup\\_%'"), roles_before);
    }

    /// What a copy reads on its source: the structure with slots for the
    /// names, and the hashes a backup of the same rows records.
    #[pg_test]
    fn the_source_side_of_a_copy_gives_slotted_structure_and_the_backups_hashes() {
        let id = rich_tenant("b0000000-0000-4000-8000-0000000000e1", "cp_src");
        let (status, message, backup_id, _) = take_backup(&id, true);
        assert_eq!(status, "SUCCESS", "{message}");
        let backup_id = backup_id.unwrap();
        // The names of the schema read, and of its role, are slots: never text.
        for (what, argument) in [("live", "NULL"), ("backup", &format!("'{backup_id}'")[..])] {
            let statements =
                one::<i64>(&format!("SELECT count(*) FROM tenant.institution_structure('{id}', {argument}::uuid)"))
                    .unwrap();
            assert!(statements > 10, "{what}: {statements} statements");
            let named = one::<i64>(&format!(
                "SELECT count(*) FROM tenant.institution_structure('{id}', {argument}::uuid) s
                  WHERE s.statement::text ~ '(cp_src|tc_backup_)'"
            ));
            assert_eq!(named, Some(0), "{what}: a statement names the schema or its role in text");
            let slots = one::<i64>(&format!(
                "SELECT count(*) FROM tenant.institution_structure('{id}', {argument}::uuid) s,
                        jsonb_array_elements(s.statement) p WHERE p ? 'slot'"
            ));
            assert!(slots.unwrap() > 0, "{what}: no slot");
        }
        // The same rows hash alike on the live schema and in the backup's manifest.
        let differing = one::<i64>(&format!(
            "SELECT count(*) FROM tenant.institution_manifest('{id}') m
               FULL JOIN tenant.backup_tables b ON b.backup_id = '{backup_id}' AND b.table_name = m.table_name
              WHERE m.row_count IS DISTINCT FROM b.row_count OR m.content_hash IS DISTINCT FROM b.content_hash::text"
        ));
        assert_eq!(differing, Some(0));
        assert_eq!(
            one::<String>(
                "SELECT format('%s/%s', operation_type, metadata->>'copy_out') FROM tenant.schema_operations ORDER BY id DESC LIMIT 1"
            ),
            Some("BACKUP/true".into())
        );
        // A backup of another institution is refused.
        let other = rich_tenant("b0000000-0000-4000-8000-0000000000e2", "cp_other");
        Spi::run(&format!(
            "DO $$ BEGIN
                 PERFORM tenant.institution_structure('{other}', '{backup_id}');
                 RAISE EXCEPTION 'not refused';
             EXCEPTION WHEN invalid_parameter_value THEN NULL;
             END $$"
        ))
        .unwrap();
    }
}
