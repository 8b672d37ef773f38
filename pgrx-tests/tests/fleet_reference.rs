//! Reference data kept in sync: a global course catalogue copied into every
//! institution's `courses`; local edits and deletes are conflicts handled by
//! the policy (report, keep_local, overwrite); new institutions get the
//! catalogue at creation.

mod common;
use common::*;
use postgres::Client;
use uuid::Uuid;

const DB: &str = "it_fleet_reference";

fn title(db: &mut Client, schema: &str, code: &str) -> Option<String> {
    db.query_opt(&format!("SELECT title FROM {schema}.courses WHERE code = $1"), &[&code]).unwrap().map(|r| r.get(0))
}

fn sync(db: &mut Client, policy: &str) {
    db.batch_execute(&format!("CALL tenant.sync_reference('public.course_catalog', 'courses', 'code', '{policy}')"))
        .unwrap();
}

fn conflicts(db: &mut Client) -> Vec<(String, String, String)> {
    db.query("SELECT schema_name, key, kind FROM tenant.reference_conflicts ORDER BY 1, 2", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[test]
fn the_catalogue_syncs_and_local_changes_follow_the_policy() {
    let mut db = fresh_database(DB);
    db.batch_execute(
        "CREATE TABLE public.course_catalog (code text PRIMARY KEY, title text NOT NULL, credits int NOT NULL);
         INSERT INTO public.course_catalog VALUES ('MATH101', 'Algebra', 3), ('PHYS101', 'Mechanics', 4);
         CREATE TABLE tenant_template.courses (code text PRIMARY KEY, title text NOT NULL, credits int, local_note text);",
    )
    .unwrap();
    assert!(create(&mut db, Uuid::new_v4(), "ref_a").ok());
    assert!(create(&mut db, Uuid::new_v4(), "ref_b").ok());
    assert_eq!(
        sqlstate_of_failure(&mut db, "CALL tenant.sync_reference('public.course_catalog', 'courses', 'nope')"),
        "42703"
    );
    assert_eq!(
        sqlstate_of_failure(&mut db, "CALL tenant.sync_reference('public.course_catalog', 'courses', 'code', 'maybe')"),
        "22023"
    );
    sync(&mut db, "report");
    assert_eq!(title(&mut db, "ref_a", "MATH101").as_deref(), Some("Algebra"));
    assert_eq!(title(&mut db, "ref_b", "PHYS101").as_deref(), Some("Mechanics"));
    assert_eq!(count(&mut db, "SELECT count(*) FROM tenant.reference_rows"), 4);

    // ref_a edits one course and deletes the other; the catalogue changes both.
    db.batch_execute(
        "UPDATE ref_a.courses SET title = 'Our algebra' WHERE code = 'MATH101';
         DELETE FROM ref_a.courses WHERE code = 'PHYS101';
         UPDATE ref_b.courses SET local_note = 'not a copied column' WHERE code = 'MATH101';
         UPDATE public.course_catalog SET title = 'Algebra II' WHERE code = 'MATH101';
         UPDATE public.course_catalog SET credits = 5 WHERE code = 'PHYS101';
         INSERT INTO ref_b.courses VALUES ('CHEM101', 'Our chemistry', 2, NULL);
         INSERT INTO public.course_catalog VALUES ('CHEM101', 'Chemistry', 3);",
    )
    .unwrap();
    sync(&mut db, "report");
    assert_eq!(title(&mut db, "ref_a", "MATH101").as_deref(), Some("Our algebra"));
    assert_eq!(title(&mut db, "ref_a", "PHYS101"), None);
    assert_eq!(title(&mut db, "ref_a", "CHEM101").as_deref(), Some("Chemistry"));
    assert_eq!(title(&mut db, "ref_b", "MATH101").as_deref(), Some("Algebra II"));
    assert_eq!(title(&mut db, "ref_b", "CHEM101").as_deref(), Some("Our chemistry"));
    assert_eq!(
        conflicts(&mut db),
        vec![
            ("ref_a".into(), "MATH101".into(), "CHANGED".into()),
            ("ref_a".into(), "PHYS101".into(), "DELETED".into()),
            ("ref_b".into(), "CHEM101".into(), "LOCAL".into()),
        ]
    );
    let both = db
        .query_one(
            "SELECT local_row->>'title', source_row->>'title' FROM tenant.reference_conflicts WHERE key = 'MATH101'",
            &[],
        )
        .unwrap();
    assert_eq!((both.get::<_, String>(0), both.get::<_, String>(1)), ("Our algebra".into(), "Algebra II".into()));

    sync(&mut db, "keep_local");
    assert_eq!(title(&mut db, "ref_a", "MATH101").as_deref(), Some("Our algebra"));
    assert!(conflicts(&mut db).is_empty());

    sync(&mut db, "overwrite");
    assert_eq!(title(&mut db, "ref_a", "MATH101").as_deref(), Some("Algebra II"));
    assert_eq!(title(&mut db, "ref_a", "PHYS101").as_deref(), Some("Mechanics"));
    assert_eq!(title(&mut db, "ref_b", "CHEM101").as_deref(), Some("Chemistry"));
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM ref_b.courses WHERE code = 'MATH101' AND local_note = 'not a copied column'"
        ),
        1
    );
    assert!(conflicts(&mut db).is_empty());

    // A new institution gets the catalogue when it is created.
    assert!(create(&mut db, Uuid::new_v4(), "ref_c").ok());
    assert_eq!(count(&mut db, "SELECT count(*) FROM ref_c.courses"), 3);
    assert_eq!(title(&mut db, "ref_c", "PHYS101").as_deref(), Some("Mechanics"));
}

#[test]
fn the_sync_writes_as_the_institutions_role() {
    let mut db = fresh_database(DB);
    db.batch_execute(
        "CREATE TABLE public.course_catalog (code text PRIMARY KEY, title text NOT NULL, credits int NOT NULL);
         INSERT INTO public.course_catalog VALUES ('MATH101', 'Algebra', 3);
         CREATE TABLE tenant_template.courses (code text PRIMARY KEY, title text NOT NULL, credits int);
         CREATE TABLE public.it_ref_marks (who text);
         GRANT INSERT ON public.it_ref_marks TO PUBLIC;",
    )
    .unwrap();
    assert!(create(&mut db, Uuid::new_v4(), "refrole_a").ok());
    // A trigger the tenant planted records who runs it.
    db.batch_execute(
        "CREATE FUNCTION refrole_a.mark() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO public.it_ref_marks VALUES (current_user); RETURN NEW; END $$;
         ALTER FUNCTION refrole_a.mark() OWNER TO refrole_a_owner;
         CREATE TRIGGER mark BEFORE INSERT ON refrole_a.courses FOR EACH ROW EXECUTE FUNCTION refrole_a.mark();",
    )
    .unwrap();
    db.batch_execute("CALL tenant.sync_reference('public.course_catalog', 'courses', 'code')").unwrap();
    let who: Vec<String> =
        db.query("SELECT who FROM public.it_ref_marks", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(who, vec!["refrole_a_owner".to_string()]);
}
