#!/bin/sh
# Generates a throwaway PKI for tests with the openssl CLI (test-only; nothing
# here is ever committed). Usage: tests/certs.sh DIR   (DIR is created if needed)
#
# Writes into DIR (EC P-256 keys, PEM, valid 2 days):
#   ca.crt ca.key                 root CA ("mqttlb test CA")
#   server.crt server.key         leaf signed by the root; SAN DNS:localhost, IP:127.0.0.1
#   inter.crt inter.key           intermediate CA signed by the root
#   chain-server.crt/.key         leaf signed by the intermediate; the .crt holds the
#                                 full chain (leaf, then intermediate), as tls.cert allows
#   client.crt client.key         client certificate (clientAuth) signed by the root
#   other-ca.crt other-ca.key     an unrelated root CA (for "wrong CA" tests)
#   other-client.crt/.key         client certificate signed by other-ca
#   device1/device2.crt/.key      client certificates CN=device-N, SAN DNS:device-N.fleet.example,
#                                 URI:urn:dev:device-N (device identity)
#   rsa-server.crt/.key           like server.crt but with an RSA 2048 key
# DIR itself is made world-traversable (mode 755) for the same reason as the
# key modes at the end. Prints nothing on success; exits non-zero (with openssl's message) on failure.
set -eu
dir=${1:?usage: certs.sh DIR}
mkdir -p "$dir"
chmod 755 "$dir"
cd "$dir"
days=2

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ext_file() {  # $1 name, $2 body
  printf '%s\n' "$2" > "$1.ext"
}

# root CAs (self-signed)
for ca in ca other-ca; do
  key "$ca.key"
  openssl req -x509 -new -key "$ca.key" -sha256 -days $days -subj "/CN=mqttlb test $ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$ca.crt"
done

# sign NAME SIGNER_BASENAME EXT_BODY CN
sign() {
  [ -f "$1.key" ] || key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$4" -out "$1.csr"
  ext_file "$1" "$3"
  openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -CAcreateserial -sha256 \
    -days $days -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

server_ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1"
client_ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"

sign server ca "$server_ext" localhost
sign inter ca "basicConstraints=critical,CA:TRUE,pathlen:0
keyUsage=critical,keyCertSign,cRLSign" "mqttlb test intermediate"
sign chain-leaf inter "$server_ext" localhost
cat chain-leaf.crt inter.crt > chain-server.crt
mv chain-leaf.key chain-server.key
rm -f chain-leaf.crt
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa-server.key 2>/dev/null
sign rsa-server ca "$server_ext" localhost
sign client ca "$client_ext" "mqttlb test client"
sign other-client other-ca "$client_ext" "mqttlb other client"
# Two devices, each with a CN, a DNS SAN and a URI SAN (tls.identity tests).
for d in 1 2; do
  sign "device$d" ca "$client_ext
subjectAltName=DNS:device-$d.fleet.example,URI:urn:dev:device-$d" "device-$d"
done
rm -f ./*.srl
# Throwaway keys, readable by all: mosquitto started as root drops to the
# "mosquitto" user before it loads its certificate and key.
chmod 644 ./*.key ./*.crt
