//! `herald token new`: a token for `herald serve`, printed once with the hashed form that the
//! server's `HERALD_API_TOKENS` lists.

use herald_api::auth::{new_token, Scope};

use crate::cli::Global;
use crate::commands::print_json;

pub fn new(global: &Global, scope: Scope) -> anyhow::Result<()> {
    let made = new_token(scope);
    if global.json {
        return print_json(&made);
    }
    outln!("token:  {}", made.token);
    outln!("hashed: {}", made.hashed);
    eprintln!(
        "herald: a {scope} token, shown once; the server keeps only its hashed form: add that to \
         HERALD_API_TOKENS (comma-separated) of `herald serve`"
    );
    Ok(())
}
