#!/bin/sh
# imarotd guest test: run by the user nobody.
echo "probe as nobody"
