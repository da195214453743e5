(cd examples/node && npm ci --no-audit --no-fund)   # @grpc/grpc-js and @grpc/proto-loader, as locked
node examples/node/client.js photo.jpg              # one JSON line per face (--server HOST:PORT, else $FER_SERVER)
