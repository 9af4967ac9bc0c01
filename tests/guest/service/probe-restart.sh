#!/bin/sh
# imarotd guest test: run by root after "systemctl restart imarotd".
echo "probe after restart"
