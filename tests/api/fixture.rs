//! The hand-made page of odd forms (`tests/fixtures/work_orders_page.json`), served by the
//! simulator and exported: every record read, normalised alike, and safe in CSV and XLSX.

use calamine::{Data, DataType, Reader, Xlsx};
use serde_json::Value;

use crate::helpers::{spawn_app, Options};

fn fixture_records() -> Vec<serde_json::Map<String, Value>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/work_orders_page.json"
    );
    let page: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["WorkOrder"].as_object().unwrap().clone())
        .collect()
}

#[tokio::test]
async fn the_fixture_survives_snapshot_csv_and_xlsx() {
    let app = spawn_app(Options {
        records: 0,
        publisher: false,
        ..Default::default()
    })
    .await;
    for r in fixture_records() {
        app.sim.state.insert_raw(r).unwrap();
    }
    let o = app.poll().await;
    assert_eq!((o.records, o.invalid), (3, 0));

    let csv = app
        .get("/exports/work_orders.csv")
        .await
        .text()
        .await
        .unwrap();
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(csv.as_bytes())
        .records()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 3);
    let (r101, r102, r105) = (&rows[0], &rows[1], &rows[2]);
    assert_eq!(
        &r101[13], "تغيير الحشوات\r\nوفحص المحرك، ثم \"اختبار\" الضغط",
        "Arabic with CRLF and quotes round-trips"
    );
    assert_eq!(&r101[1], "000101", "leading zeros kept");
    assert_eq!(&r101[6], "Open");
    assert_eq!(
        &r102[2], "'=HYPERLINK(\"http://example.invalid\",\"open\")",
        "formula neutralised"
    );
    assert_eq!(&r102[9], "-250", "a negative amount stays a number");
    assert_eq!(&r102[8], "", "0000-00-00 is no date");
    assert_eq!(
        &r102[12], "",
        "empty string in an integer field is no value"
    );
    assert_eq!(&r102[11], "4");
    assert_eq!(&r105[2], "Generator overhaul 🔧");
    assert_eq!(&r105[13], "");

    let body = app
        .get("/exports/work_orders.xlsx")
        .await
        .bytes()
        .await
        .unwrap();
    let mut book: Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(body.to_vec())).unwrap();
    let sheet = book.worksheet_range_at(0).unwrap().unwrap();
    let row = |i: usize| sheet.rows().nth(i).unwrap().to_vec();
    assert_eq!(
        row(2)[2],
        Data::String("=HYPERLINK(\"http://example.invalid\",\"open\")".into()),
        "a string, not a formula"
    );
    assert_eq!(row(2)[9].as_f64(), Some(-250.0));
    assert_eq!(row(1)[9].as_f64(), Some(1500.5));
    assert_eq!(
        row(1)[13],
        Data::String("تغيير الحشوات\nوفحص المحرك، ثم \"اختبار\" الضغط".into()),
        "CR LF becomes Excel's in-cell line break, LF"
    );
    assert_eq!(row(2)[8], Data::Empty);
    app.stop().await;
}
