#!/bin/sh
# imarotd guest test: run by root before the restarts.
echo "probe before restart"
