#!/usr/bin/env bash
# System packages the project uses outside Python: the Tesseract OCR engine (the default
# engine of `xgenmm curate ocr`; pytesseract only drives the `tesseract` binary).
#
# Idempotent and never fatal: installs only what is missing, only as root with apt-get.
# Without it the OCR tests skip, naming the reason.
set -u

if command -v tesseract >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: tesseract is missing (install the tesseract-ocr package); OCR tests will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends tesseract-ocr >/dev/null 2>&1; then
  # A fresh machine may have no package lists yet.
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq --no-install-recommends tesseract-ocr >/dev/null 2>&1 || true
fi
if command -v tesseract >/dev/null 2>&1; then
  echo "system-deps: installed $(tesseract --version 2>/dev/null | head -n1)"
else
  echo "system-deps: could not install tesseract-ocr; OCR tests will skip" >&2
fi
exit 0
