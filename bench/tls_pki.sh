#!/usr/bin/env bash
# tls_pki.sh DIR: a throwaway PKI for the TLS benchmarks, made fresh in DIR
# (never committed): a P-256 CA and a P-256 server certificate for
# localhost / 127.0.0.1, both valid one day. Writes DIR/ca.crt,
# DIR/server.crt and DIR/server.key; the openssl output goes to DIR/pki.log.
set -u
dir=${1:?usage: tls_pki.sh DIR}
rm -rf "$dir" && mkdir -p "$dir" || exit 1
cd "$dir" || exit 1
{
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout ca.key -out ca.crt -days 1 -subj "/CN=duplex bench CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" &&
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key &&
  openssl req -new -key server.key -subj "/CN=localhost" -out server.csr &&
  printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" > server.ext &&
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
    -extfile server.ext -days 1 -out server.crt
} > pki.log 2>&1 || { echo "could not make the test certificates (see $dir/pki.log)" >&2; exit 1; }
