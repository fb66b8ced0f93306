#!/usr/bin/env bash
# Builds the "amazon-video" dataset folder of ../shared/EVAL.md from SASRec's data/Video.txt:
#
#   scripts/amazon-video-dataset.sh [OUT_DIR]     (default: ~/.cache/attune-datasets)
#
# writes OUT_DIR/amazon-video/interactions.tsv (`user<TAB>item<TAB>weight<TAB>unix_ts`, no header).
# There is no items.tsv: the file carries no item metadata, and `attune eval` runs without it
# (the content model is skipped; the replay's catalog is every item of the train part).
#
# Source. github.com/kang205/SASRec (W.-C. Kang, J. McAuley, "Self-Attentive Sequential
# Recommendation", ICDM 2018), file data/Video.txt at commit e3738967fddab206d6eeb4fda433e7a7034dd8b1
# (sha256 below): the Amazon "Video Games" reviews of McAuley et al. (SIGIR 2015 / WWW 2016,
# http://jmcauley.ucsd.edu/data/amazon/), reduced by that repository's data/DataProcessing.py to
# reviewers and products with >= 5 reviews each in the raw file, renumbered from 1, each user's
# lines in review-time order (ties in the order of the raw file). 287,107 lines `user item`,
# 31,013 users, 23,715 items; no ratings, no timestamps, no duplicate pairs.
#
# Licence. The repository's code is Apache-2.0; the review data belongs to Amazon and is
# distributed by McAuley's group for research use. The data is NOT covered by Apache-2.0: never
# commit the files this script writes (like MovieLens, fetch them where they are used).
#
# Conversion (exact): line k (k = 0, 1, ...) of user u's lines in the file, in file order, becomes
#   u <TAB> item <TAB> 1 <TAB> 1262304000 + 86400*k
# i.e. weight 1 (implicit feedback) and a synthesized timestamp: 2010-01-01T00:00:00Z plus one day
# per position, strictly increasing within a user, so EVAL.md's per-person time split puts the last
# max(1, floor(0.2 n)) of a person's lines (in the file's order) in test. Timestamps say nothing
# across people (every history starts on the same day); Attune's served ranker uses them only
# through each person's order (recency weights by position, transitions), never across people.
#
# Input: the local mirror (/work/.mirror/kang205+SASRec/repo) if present, else
# https://raw.githubusercontent.com/kang205/SASRec/<commit>/data/Video.txt; checked by sha256.
set -euo pipefail
out=${1:-$HOME/.cache/attune-datasets}/amazon-video
commit=e3738967fddab206d6eeb4fda433e7a7034dd8b1
sha=b7376fe24430743f411dc7f567285657b2adb3f74361cc7ba0aee94f3024b651
mirror=${SASREC_MIRROR:-/work/.mirror/kang205+SASRec/repo}

mkdir -p "$out"
raw=$out/Video.txt.part
if git -C "$mirror" cat-file -e "$commit:data/Video.txt" 2>/dev/null; then
  git -C "$mirror" cat-file -p "$commit:data/Video.txt" >"$raw"
else
  curl -fsSL "https://raw.githubusercontent.com/kang205/SASRec/$commit/data/Video.txt" -o "$raw"
fi
echo "$sha  $raw" | sha256sum -c --quiet -

awk -v OFS='\t' 'NF == 2 { print $1, $2, 1, 1262304000 + 86400 * pos[$1]++ }' "$raw" >"$out/interactions.tsv.part"
rm "$raw"
mv "$out/interactions.tsv.part" "$out/interactions.tsv"
awk -F'\t' '{ u[$1]; i[$2] } END { printf "amazon-video: %d interactions, %d users, %d items -> %s\n", NR, length(u), length(i), FILENAME }' \
  "$out/interactions.tsv"
