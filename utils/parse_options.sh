#!/usr/bin/env bash
# Kaldi-style option parsing, sourced by a script after it sets its defaults:
#
#   stage=0; nj=2
#   . utils/parse_options.sh
#
# `--some-name VALUE` or `--some-name=VALUE` sets the existing variable some_name=VALUE.
# A boolean variable (value true/false) may also be given as `--flag` / `--no-flag`.
# `--help` / `-h` prints $help_message and exits 0. An unknown option is an error (exit 2).
# Positional arguments that follow the options are left in "$@".

__po_script=$(basename "$0")
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      printf '%s\n' "${help_message:-Usage: $__po_script [options]}"
      exit 0 ;;
    --*=*)
      __po_name=${1%%=*}; __po_value=${1#*=}; shift ;;
    --no-*)
      __po_name=--${1#--no-}; __po_value=false; shift
      __po_var=$(echo "${__po_name#--}" | tr '-' '_')
      if [ -z "${!__po_var+x}" ] || { [ "${!__po_var}" != true ] && [ "${!__po_var}" != false ]; }; then
        echo "$__po_script: unknown option '--no-${__po_name#--}' (see --help)" >&2; exit 2
      fi ;;
    --*)
      __po_name=$1; shift
      __po_var=$(echo "${__po_name#--}" | tr '-' '_')
      if [ -n "${!__po_var+x}" ] && { [ "${!__po_var}" = true ] || [ "${!__po_var}" = false ]; } \
         && { [ $# -eq 0 ] || [[ "$1" == --* ]]; }; then
        __po_value=true
      else
        if [ $# -eq 0 ]; then
          echo "$__po_script: option '$__po_name' needs a value" >&2; exit 2
        fi
        __po_value=$1; shift
      fi ;;
    *) break ;;
  esac
  __po_var=$(echo "${__po_name#--}" | tr '-' '_')
  if [ -z "${!__po_var+x}" ]; then
    echo "$__po_script: unknown option '$__po_name' (see --help)" >&2; exit 2
  fi
  if [ "${!__po_var}" = true ] || [ "${!__po_var}" = false ]; then
    if [ "$__po_value" != true ] && [ "$__po_value" != false ]; then
      echo "$__po_script: option '$__po_name' takes true or false, got '$__po_value'" >&2; exit 2
    fi
  fi
  printf -v "$__po_var" '%s' "$__po_value"
done
unset __po_name __po_value __po_var __po_script
true
