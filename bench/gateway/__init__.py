"""POST /wechat under load: plaintext and AES messages against a bare-Flask floor (`bash bench/gateway/run.sh`)."""
