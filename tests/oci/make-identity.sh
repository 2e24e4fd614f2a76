#!/bin/sh
# Makes the PKI the OCI token tests need, with the openssl CLI, in DIR:
#   ca.pem/ca.key              a root CA (trusted by the emulator's /v1/x509, and the
#                              cluster CA that verifies the proxymux TLS certificate)
#   intermediate.pem/.key      an intermediate CA signed by the root
#   leaf.pem/leaf.key          the instance identity: OU=opc-tenant:TENANCY, signed by the
#                              intermediate (key.pem of the metadata service)
#   rogue-*.pem/.key           the same chain from an untrusted root
#   tls.pem/tls.key            a server certificate for 127.0.0.1 and proxymux.emulator.test,
#                              signed by the root
# Usage: make-identity.sh DIR TENANCY
set -eu
dir=$1
tenancy=$2
cd "$dir"
q() { "$@" 2>/dev/null; }
cat > ext.cnf <<CNF
[ca]
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign
[leaf]
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
[tls]
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:proxymux.emulator.test
CNF
chain() {
  p=$1
  q openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -subj "/CN=${p}Root CA" \
    -keyout "${p}ca.key" -out "${p}ca.pem" -extensions ca -config ext.cnf
  q openssl req -newkey rsa:2048 -nodes -subj "/CN=${p}Intermediate CA" \
    -keyout "${p}intermediate.key" -out "${p}intermediate.csr"
  q openssl x509 -req -sha256 -days 2 -in "${p}intermediate.csr" -CA "${p}ca.pem" \
    -CAkey "${p}ca.key" -CAcreateserial -extfile ext.cnf -extensions ca -out "${p}intermediate.pem"
  q openssl req -newkey rsa:2048 -nodes \
    -subj "/CN=ocid1.instance.oc1..emulated/OU=opc-certtype:instance/OU=opc-instance:ocid1.instance.oc1..emulated/OU=opc-compartment:$tenancy/OU=opc-tenant:$tenancy" \
    -keyout "${p}leaf.key" -out "${p}leaf.csr"
  q openssl x509 -req -sha256 -days 1 -in "${p}leaf.csr" -CA "${p}intermediate.pem" \
    -CAkey "${p}intermediate.key" -CAcreateserial -extfile ext.cnf -extensions leaf -out "${p}leaf.pem"
}
chain ""
chain "rogue-"
q openssl req -newkey rsa:2048 -nodes -subj "/CN=proxymux.emulator.test" -keyout tls.key -out tls.csr
q openssl x509 -req -sha256 -days 2 -in tls.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
  -extfile ext.cnf -extensions tls -out tls.pem
