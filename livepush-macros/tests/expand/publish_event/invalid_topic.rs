::core::compile_error! {
    "the topic contains whitespace ' ', which topics do not allow: use ASCII letters, digits and `_-.:/@#=+~*`"
}
async fn create() -> Json<u8> {
    Json(1)
}
