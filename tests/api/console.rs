//! The web console on `/`: a browser gets the page with its policy, a plain
//! client is still told to upgrade, and a WebSocket upgrade on `/` stays a
//! socket whatever its Accept header says.

use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::spawn_app;

#[tokio::test]
async fn root_serves_the_console_to_browsers_and_sockets_to_upgrades() {
    let app = spawn_app().await;

    // A browser: the page, with its Content-Security-Policy.
    let page = app
        .client
        .get(app.url("/"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/assets/app.js"></script>"#));

    // Its module, with a JavaScript content type; an unknown file is a 404.
    let js = app.get("/assets/app.js", None).await;
    assert_eq!(js.status(), 200);
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(app.get("/assets/nope.js", None).await.status(), 404);

    // A plain client is still told to upgrade.
    assert_eq!(app.get("/", None).await.status(), 426);

    // An upgrade on / that also accepts HTML is a socket.
    let (_, token) = app.customer("c@x.io").await;
    let mut req = format!("ws://{}/", app.base.trim_start_matches("http://"))
        .into_client_request()
        .unwrap();
    let h = req.headers_mut();
    h.insert("accept", "text/html".parse().unwrap());
    h.insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (_, res) = tokio_tungstenite::connect_async(req)
        .await
        .expect("the upgrade on / succeeds");
    assert_eq!(res.status(), 101);
}
