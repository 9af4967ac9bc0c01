#!/bin/sh
# imarotd guest test: run by root while imarotd measures on fanotify.
echo "probe on fanotify"
