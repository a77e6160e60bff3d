#!/usr/bin/env bash
# Builds, pushes, deploys, verifies and tears down the dual-stack pattern with dualprobe
# (cloudformation/parent.yml), the way README "Deploying on ECS/Fargate" describes it.
#
#   scripts/deploy.sh [options] --build --push --deploy --verify    (or --all)
#   scripts/deploy.sh [options] --teardown
#
# Steps (run in this order, whatever order they are given in):
#   --build      docker build the dualprobe image (linux/amd64, the task's platform);
#                with --app-dir also the seed pattern's sample app
#   --push       create the ECR repositories if missing, log docker in to ECR, push
#   --deploy     scripts/preflight.sh, then sam deploy with the parameters below
#   --verify     wait for the service, dig A/AAAA and curl over IPv4 and IPv6 the load
#                balancer, and `dualprobe probe` inside a task through ECS Exec (ipv6only:
#                IPv6 only, and an IPv4-only name through NAT64)
#   --teardown   sam delete, and delete the ECR repositories this script and the cache made
#   --all        --build --push --deploy --verify
# Options:
#   --region R                 default: $AWS_REGION, $AWS_DEFAULT_REGION, aws configure
#   --stack-name S             default: ipv6-environment
#   --image-tag T              dualprobe image tag; default: Cargo version + git commit
#   --repo-name N              dualprobe's ECR repository; default: dualprobe
#   --account-id ID            skip the sts get-caller-identity lookup
#   --app-image URI            the application image (must be pullable from private ECR)
#   --app-dir DIR              build and push the seed's sample app from DIR (repository
#                              sample-app-repo, tag ipv6-app); --verify then also curls
#                              its /list-buckets and /list-ec2
#                              Neither: nginx from public.ecr.aws through the pull
#                              through cache (docker/library/nginx:stable-alpine)
#   --metrics-export M         cloudwatch (default) or prometheus
#   --network-mode M           dualstack (default) or ipv6only: IPv6-only private subnets,
#                              DNS64 + a NAT gateway (NAT64); the stack pulls the images
#                              from ECR's dual-stack ACCOUNT.dkr-ecr.REGION.on.aws
#   --ecs-exec true|false      default: true
#   --pull-through-cache-prefix P   default: dualprobe-ecr-public ("" for none)
#   --no-create-cache-rule     reuse an existing public.ecr.aws rule with that prefix
#   --parameter KEY=VALUE      another parent.yml parameter (repeatable)
#   --skip-preflight           do not run scripts/preflight.sh before --deploy
#   --dry-run                  print every command instead of running it (no AWS call)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "deploy: $*" >&2; exit 2; }

REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
STACK_NAME=ipv6-environment
IMAGE_TAG=""
REPO_NAME=dualprobe
ACCOUNT_ID=""
APP_IMAGE=""
APP_DIR=""
APP_REPO=sample-app-repo
APP_TAG=ipv6-app
METRICS_EXPORT=cloudwatch
NETWORK_MODE=dualstack
ECS_EXEC=true
PTC_PREFIX=dualprobe-ecr-public
PTC_CREATE=true
EXTRA_PARAMS=()
PREFLIGHT=1
DRY_RUN=0
DO_BUILD=0 DO_PUSH=0 DO_DEPLOY=0 DO_VERIFY=0 DO_TEARDOWN=0

need() { [[ $# -ge 2 ]] || die "$1 needs a value"; }
while (($#)); do
  case "$1" in
    --build) DO_BUILD=1 ;;
    --push) DO_PUSH=1 ;;
    --deploy) DO_DEPLOY=1 ;;
    --verify) DO_VERIFY=1 ;;
    --teardown) DO_TEARDOWN=1 ;;
    --all) DO_BUILD=1 DO_PUSH=1 DO_DEPLOY=1 DO_VERIFY=1 ;;
    --region) need "$@"; REGION="$2"; shift ;;
    --stack-name) need "$@"; STACK_NAME="$2"; shift ;;
    --image-tag) need "$@"; IMAGE_TAG="$2"; shift ;;
    --repo-name) need "$@"; REPO_NAME="$2"; shift ;;
    --account-id) need "$@"; ACCOUNT_ID="$2"; shift ;;
    --app-image) need "$@"; APP_IMAGE="$2"; shift ;;
    --app-dir) need "$@"; APP_DIR="$2"; shift ;;
    --metrics-export) need "$@"; METRICS_EXPORT="$2"; shift ;;
    --network-mode) need "$@"; NETWORK_MODE="$2"; shift ;;
    --ecs-exec) need "$@"; ECS_EXEC="$2"; shift ;;
    --pull-through-cache-prefix) need "$@"; PTC_PREFIX="$2"; shift ;;
    --no-create-cache-rule) PTC_CREATE=false ;;
    --parameter) need "$@"; [[ "$2" == ?*=* ]] || die "--parameter needs KEY=VALUE, not '$2'"; EXTRA_PARAMS+=("$2"); shift ;;
    --skip-preflight) PREFLIGHT=0 ;;
    --dry-run) DRY_RUN=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

((DO_BUILD + DO_PUSH + DO_DEPLOY + DO_VERIFY + DO_TEARDOWN > 0)) \
  || die "nothing to do: give --build, --push, --deploy, --verify, --teardown or --all (see --help)"
[[ "${METRICS_EXPORT}" == cloudwatch || "${METRICS_EXPORT}" == prometheus ]] \
  || die "--metrics-export must be cloudwatch or prometheus, not '${METRICS_EXPORT}'"
[[ "${NETWORK_MODE}" == dualstack || "${NETWORK_MODE}" == ipv6only ]] \
  || die "--network-mode must be dualstack or ipv6only, not '${NETWORK_MODE}'"
[[ "${ECS_EXEC}" == true || "${ECS_EXEC}" == false ]] || die "--ecs-exec must be true or false, not '${ECS_EXEC}'"
[[ -z "${APP_IMAGE}" || -z "${APP_DIR}" ]] || die "--app-image and --app-dir exclude each other"
[[ -z "${APP_DIR}" || -f "${APP_DIR}/Dockerfile" ]] || die "--app-dir ${APP_DIR}: no Dockerfile there"
[[ -z "${ACCOUNT_ID}" || "${ACCOUNT_ID}" =~ ^[0-9]{12}$ ]] || die "--account-id must be 12 digits, not '${ACCOUNT_ID}'"
if [[ -z "${APP_IMAGE}" && -z "${APP_DIR}" && -z "${PTC_PREFIX}" ]]; then
  die "no application image: give --app-image or --app-dir (or keep a --pull-through-cache-prefix for nginx)"
fi
if ((DO_VERIFY)) && [[ "${ECS_EXEC}" == false ]]; then
  echo "deploy: --ecs-exec false: --verify skips the dualprobe probe through ECS Exec" >&2
fi

if [[ -z "${REGION}" ]]; then
  ((!DRY_RUN)) || die "--dry-run needs --region (or AWS_REGION)"
  REGION="$(aws configure get region 2>/dev/null || true)"
  [[ -n "${REGION}" ]] || die "no region: pass --region or set AWS_REGION"
fi
if [[ -z "${IMAGE_TAG}" ]]; then
  version="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "${ROOT}/Cargo.toml" | head -n 1)"
  commit="$(git -C "${ROOT}" rev-parse --short HEAD 2>/dev/null || true)"
  IMAGE_TAG="${version:-dev}${commit:+-${commit}}"
fi
[[ "${IMAGE_TAG}" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "--image-tag '${IMAGE_TAG}' is not a valid image tag"

# ------------------------------------------------------------------ running commands
# quote ARG: ARG as the shell would need it typed (printed commands are copy-pasteable).
quote() {
  local dq='["$`\\!]'
  if [[ "$1" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
    printf '%s' "$1"
  elif [[ "$1" != *\'* ]]; then
    printf "'%s'" "$1"
  elif ! [[ "$1" =~ $dq ]]; then
    printf '"%s"' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}
show() {
  local a out="+"
  for a in "$@"; do out+=" $(quote "${a}")"; done
  printf '%s\n' "${out}"
}
# run CMD...: runs CMD (echoed), or with --dry-run only prints it.
run() {
  show "$@"
  ((DRY_RUN)) || "$@"
}
# capture VAR CMD...: VAR=$(CMD); with --dry-run VAR becomes the placeholder <VAR>.
capture() {
  local var="$1" value
  shift
  # shellcheck disable=SC2016 # a literal $( ) in the printed command
  printf '+ %s=$(%s)\n' "${var}" "$(show "$@" | cut -c3-)"
  if ((DRY_RUN)); then
    value="<${var}>"
  else
    value="$("$@")"
  fi
  printf -v "${var}" '%s' "${value}"
}
step() { printf '\n=== %s\n' "$*"; }

if [[ -z "${ACCOUNT_ID}" ]]; then
  capture ACCOUNT_ID aws sts get-caller-identity --region "${REGION}" --query Account --output text
fi
# Pushes go to the registry's usual name; the tasks pull by PULL_REGISTRY: the same registry,
# under the dual-stack name in ipv6only mode (IPv6-only ECS tasks must pull from ECR's
# dual-stack endpoints, which PrivateLink does not carry).
REGISTRY="${ACCOUNT_ID}.dkr.ecr.${REGION}.amazonaws.com"
PULL_REGISTRY="${REGISTRY}"
[[ "${NETWORK_MODE}" == ipv6only ]] && PULL_REGISTRY="${ACCOUNT_ID}.dkr-ecr.${REGION}.on.aws"
DUALPROBE_URI="${REGISTRY}/${REPO_NAME}:${IMAGE_TAG}"
APP_PUSH_URI=""
if [[ -n "${APP_DIR}" ]]; then
  APP_PUSH_URI="${REGISTRY}/${APP_REPO}:${APP_TAG}"
  APP_IMAGE="${PULL_REGISTRY}/${APP_REPO}:${APP_TAG}"
elif [[ -z "${APP_IMAGE}" ]]; then
  # Any public.ecr.aws image runs through the cache rule the stack creates.
  APP_IMAGE="${PULL_REGISTRY}/${PTC_PREFIX}/docker/library/nginx:stable-alpine"
elif [[ "${NETWORK_MODE}" == ipv6only && "${APP_IMAGE}" != *.on.aws/* ]]; then
  echo "deploy: --app-image ${APP_IMAGE}: IPv6-only tasks pull from ECR's dual-stack name" \
    "(ACCOUNT.dkr-ecr.REGION.on.aws/...); this one may not be pullable" >&2
fi

# ensure_repo NAME: the ECR repository, created if missing.
ensure_repo() {
  if ((DRY_RUN)); then
    show aws ecr describe-repositories --region "${REGION}" --repository-names "$1"
    echo "+ (if missing)"
    show aws ecr create-repository --region "${REGION}" --repository-name "$1" \
      --image-scanning-configuration scanOnPush=true
  elif ! aws ecr describe-repositories --region "${REGION}" --repository-names "$1" >/dev/null 2>&1; then
    run aws ecr create-repository --region "${REGION}" --repository-name "$1" \
      --image-scanning-configuration scanOnPush=true --query repository.repositoryUri --output text
  fi
}

# ------------------------------------------------------------------ steps
if ((DO_BUILD)); then
  step "build ${DUALPROBE_URI}"
  run docker build --platform linux/amd64 --build-arg "VERSION=${IMAGE_TAG}" -t "${DUALPROBE_URI}" "${ROOT}"
  if [[ -n "${APP_DIR}" ]]; then
    run docker build --platform linux/amd64 -t "${APP_PUSH_URI}" "${APP_DIR}"
  fi
fi

if ((DO_PUSH)); then
  step "push to ${REGISTRY}"
  ensure_repo "${REPO_NAME}"
  [[ -z "${APP_DIR}" ]] || ensure_repo "${APP_REPO}"
  echo "+ aws ecr get-login-password --region ${REGION} | docker login --username AWS --password-stdin ${REGISTRY}"
  if ((!DRY_RUN)); then
    aws ecr get-login-password --region "${REGION}" | docker login --username AWS --password-stdin "${REGISTRY}"
  fi
  run docker push "${DUALPROBE_URI}"
  [[ -z "${APP_DIR}" ]] || run docker push "${APP_PUSH_URI}"
fi

if ((DO_DEPLOY)); then
  if ((PREFLIGHT)); then
    step "preflight"
    run "${ROOT}/scripts/preflight.sh" --region "${REGION}" --stack-name "${STACK_NAME}" \
      --metrics-export "${METRICS_EXPORT}" --ecs-exec "${ECS_EXEC}" --network-mode "${NETWORK_MODE}" \
      --pull-through-cache-prefix "${PTC_PREFIX}" --create-pull-through-cache-rule "${PTC_CREATE}"
  fi
  step "deploy ${STACK_NAME}"
  params=("ImageUri=${APP_IMAGE}" "DualprobeImageUri=${PULL_REGISTRY}/${REPO_NAME}:${IMAGE_TAG}"
          "MetricsExport=${METRICS_EXPORT}" "NetworkMode=${NETWORK_MODE}"
          "EnableEcsExec=${ECS_EXEC}" "EcrPullThroughCachePrefix=${PTC_PREFIX}"
          "CreateEcrPullThroughCacheRule=${PTC_CREATE}" ${EXTRA_PARAMS[@]+"${EXTRA_PARAMS[@]}"})
  # Relative paths in sam's printed commands and packaging: run from the repository root.
  cd "${ROOT}"
  run sam deploy --template-file cloudformation/parent.yml --stack-name "${STACK_NAME}" --region "${REGION}" \
    --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND --resolve-s3 --no-fail-on-empty-changeset \
    --parameter-overrides "${params[@]}"
fi

# output KEY: one output of the stack.
output() {
  capture "$1" aws cloudformation describe-stacks --region "${REGION}" --stack-name "${STACK_NAME}" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}

# Set by capture (printf -v), named after the stack outputs they hold.
PublicURI="" LoadBalancerDNSName="" ClusterName="" ServiceName="" TASK_ARN="" TASK_ID="" CACHED=""
verify_failed=0
check() { # check DESCRIPTION CMD...: runs CMD; a failure is reported and counted, not fatal.
  local what="$1"
  shift
  if run "$@"; then :; else echo "deploy: verify FAILED: ${what}" >&2; verify_failed=$((verify_failed + 1)); fi
}
# probe_in_task TARGET ARGS...: `dualprobe probe` inside a task through ECS Exec. ECS Exec does
# not return the remote exit status, so the verdict lines dualprobe prints decide.
probe_in_task() {
  local out
  show aws ecs execute-command --region "${REGION}" --cluster "${ClusterName}" --task "${TASK_ID}" \
    --container dualprobe --interactive --command "/dualprobe probe $*"
  ((DRY_RUN)) && return 0
  out="$(aws ecs execute-command --region "${REGION}" --cluster "${ClusterName}" --task "${TASK_ID}" \
    --container dualprobe --interactive --command "/dualprobe probe $*" 2>&1)" || true
  printf '%s\n' "${out}"
  if grep -q 'EXPECTATION NOT MET' <<<"${out}" || ! grep -q 'expectation met' <<<"${out}"; then
    echo "deploy: verify FAILED: dualprobe probe $*" >&2
    verify_failed=$((verify_failed + 1))
  fi
}

if ((DO_VERIFY)); then
  step "verify ${STACK_NAME}"
  output PublicURI
  output LoadBalancerDNSName
  output ClusterName
  output ServiceName
  run aws ecs wait services-stable --region "${REGION}" --cluster "${ClusterName}" --services "${ServiceName}"
  # The seed's checks: the load balancer answers A and AAAA, and HTTP over both families.
  for rr in A AAAA; do
    show dig +short "${rr}" "${LoadBalancerDNSName}"
    if ((!DRY_RUN)) && ! dig +short "${rr}" "${LoadBalancerDNSName}" | grep .; then
      echo "deploy: verify FAILED: no ${rr} record for ${LoadBalancerDNSName}" >&2
      verify_failed=$((verify_failed + 1))
    fi
  done
  check "HTTP over IPv4" curl -4 -fsS -o /dev/null -w '%{http_code}\n' "${PublicURI}/"
  # Needs IPv6 on this machine; a failure here may be the local network, not the stack.
  check "HTTP over IPv6 (needs IPv6 on this machine)" curl -6 -fsS -o /dev/null -w '%{http_code}\n' "${PublicURI}/"
  if [[ -n "${APP_DIR}" ]]; then
    check "the sample app's S3 dual-stack call" curl -fsS "${PublicURI}/list-buckets"
    check "the sample app's EC2 dual-stack call" curl -fsS "${PublicURI}/list-ec2"
  fi
  if [[ "${ECS_EXEC}" == true ]]; then
    capture TASK_ARN aws ecs list-tasks --region "${REGION}" --cluster "${ClusterName}" \
      --service-name "${ServiceName}" --desired-status RUNNING --query 'taskArns[0]' --output text
    TASK_ID="${TASK_ARN##*/}"
    if [[ "${NETWORK_MODE}" == ipv6only ]]; then
      # No IPv4 in the task: AWS's dual-stack names natively, an IPv4-only name through NAT64.
      probe_in_task "s3.dualstack.${REGION}.amazonaws.com:443 --check dns,tcp,tls --family ipv6"
      probe_in_task "ec2.${REGION}.api.aws:443 --check dns,tcp,tls --family ipv6"
      probe_in_task "github.com:443 --check dns,tcp,tls --family ipv6"
    else
      # S3 over both families (IPv4 through the gateway endpoint), the internet over IPv6 only.
      probe_in_task "s3.dualstack.${REGION}.amazonaws.com:443 --check dns,tcp,tls --family both"
      probe_in_task "ec2.${REGION}.api.aws:443 --check dns,tcp,tls --family ipv6"
    fi
  fi
  ((verify_failed == 0)) || die "verify: ${verify_failed} check(s) failed"
fi

# delete_repo NAME: deletes the repository and its images; one already gone is no error.
delete_repo() {
  run aws ecr delete-repository --region "${REGION}" --repository-name "$1" --force \
    --query repository.repositoryName --output text || echo "deploy: repository $1 not deleted (see above)" >&2
}

if ((DO_TEARDOWN)); then
  step "teardown ${STACK_NAME}"
  run sam delete --stack-name "${STACK_NAME}" --region "${REGION}" --no-prompts
  delete_repo "${REPO_NAME}"
  [[ -z "${APP_DIR}" ]] || delete_repo "${APP_REPO}"
  # Repositories the cache rule created on first pull outlive the stack (and the rule).
  if [[ -n "${PTC_PREFIX}" && "${PTC_CREATE}" == true ]]; then
    capture CACHED aws ecr describe-repositories --region "${REGION}" \
      --query "repositories[?starts_with(repositoryName, '${PTC_PREFIX}/')].repositoryName" --output text
    if ((DRY_RUN)); then
      show aws ecr delete-repository --region "${REGION}" --repository-name "<each of CACHED>" --force \
        --query repository.repositoryName --output text
    else
      # shellcheck disable=SC2086 # CACHED is a whitespace-separated list of names
      for repo in ${CACHED}; do delete_repo "${repo}"; done
    fi
  fi
fi
