#!/bin/sh
# imarotd guest test: run by root after imarotd was killed with SIGKILL.
echo "probe after kill"
