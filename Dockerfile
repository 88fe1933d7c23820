# The capkind manager image. Build it with hack/build-manager-image.sh, which prepares the
# context offline: rootfs/ holds the stripped manager at /manager and exactly the shared
# libraries it links (glibc, libgcc_s) and the CA bundle, from the build machine's Debian packages, so no base
# image has to be pulled. It runs as an unprivileged user; give it the group of the Docker
# socket (or run it as root where the socket allows nothing else).
FROM scratch
COPY rootfs/ /
USER 65532:65532
ENTRYPOINT ["/manager"]
