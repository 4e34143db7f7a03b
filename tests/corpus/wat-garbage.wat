(module (func (export "x") (i32.const)))
)