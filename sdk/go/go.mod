module ztmint.dev/sdk/go

go 1.26
