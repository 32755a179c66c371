{{/* Names, labels and the checks that refuse a values set that cannot work. */}}

{{- define "gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gateway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gateway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "gateway.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The routes file as YAML text: the `routes` value (a YAML object, or the file's text as given by
--set-file routes=PATH), or the chart's example while it is empty.
*/}}
{{- define "gateway.routesYaml" -}}
{{- if kindIs "string" .Values.routes -}}
{{- .Values.routes -}}
{{- else if .Values.routes -}}
{{- toYaml .Values.routes -}}
{{- else -}}
{{- .Files.Get "files/routes.example.yaml" -}}
{{- end -}}
{{- end -}}

{{/* The upstreams of the routes file (name -> upstream), for their api_key_env. */}}
{{- define "gateway.upstreamsJson" -}}
{{- $routes := include "gateway.routesYaml" . | fromYaml -}}
{{- default dict $routes.upstreams | toJson -}}
{{- end -}}

{{/* ConfigMap key of a prompt file: its relative path with "/" spelled "__". */}}
{{- define "gateway.promptKey" -}}
{{- . | replace "/" "__" -}}
{{- end -}}

{{/*
OTEL_RESOURCE_ATTRIBUTES of the pods: the namespace, the Deployment and the pod (the kubelet
expands $(K8S_POD_NAME), defined before it), then tracing.resourceAttributes.
*/}}
{{- define "gateway.otelResourceAttributes" -}}
{{- $attributes := list (printf "k8s.namespace.name=%s" .Release.Namespace) (printf "k8s.deployment.name=%s" (include "gateway.fullname" .)) "k8s.pod.name=$(K8S_POD_NAME)" -}}
{{- range $name, $value := .Values.tracing.resourceAttributes -}}
{{- $attributes = append $attributes (printf "%s=%v" $name $value) -}}
{{- end -}}
{{- join "," $attributes -}}
{{- end -}}

{{/* Label matchers that scope alert expressions to this release's scrape job. */}}
{{- define "gateway.alertSelector" -}}
job="{{ include "gateway.fullname" . }}",namespace="{{ .Release.Namespace }}"
{{- end -}}

{{- define "gateway.terminationGracePeriodSeconds" -}}
{{- add (int .Values.preStopSleepSeconds) (int (ceil .Values.shutdownGraceSeconds)) (int .Values.terminationMarginSeconds) -}}
{{- end -}}

{{/*
Checks across values that a JSON schema cannot express well; each `fail` says why and what to set.
*/}}
{{- define "gateway.validate" -}}
{{- if eq .Values.flagStore.type "sqlite" -}}
{{- if gt (int .Values.replicaCount) 1 -}}
{{- fail (printf "replicaCount=%d needs flagStore.type=redis: with the SQLite flag store each pod would have its own SQLite file and the replicas' flags would diverge (a rollback on one pod would not reach the others). Set flagStore.type=redis and flagStore.redis.existingSecret (or url), or replicaCount=1." (int .Values.replicaCount)) -}}
{{- end -}}
{{- if .Values.autoscaling.enabled -}}
{{- fail "autoscaling.enabled=true needs flagStore.type=redis: with the SQLite flag store each pod would have its own SQLite file and the replicas' flags would diverge (a rollback on one pod would not reach the others). Set flagStore.type=redis and flagStore.redis.existingSecret (or url)." -}}
{{- end -}}
{{- end -}}
{{- if eq .Values.flagStore.type "redis" -}}
{{- if and (not .Values.flagStore.redis.existingSecret) (not .Values.flagStore.redis.url) -}}
{{- fail "flagStore.type=redis needs flagStore.redis.existingSecret (a Secret whose key flagStore.redis.key holds the redis:// URL, password included) or flagStore.redis.url (a Redis without a password)." -}}
{{- end -}}
{{- end -}}
{{- if not .Values.clientKeys.existingSecret -}}
{{- fail "clientKeys.existingSecret is empty: the gateway refuses to serve without client keys. Create a Secret holding {\"app-name\": \"key\"} as JSON (docs/deployment.md) and name it here." -}}
{{- end -}}
{{- if .Values.tracing.enabled -}}
{{- $tracingEnv := list "OTEL_TRACES_EXPORTER" "OTEL_EXPORTER_OTLP_ENDPOINT" "OTEL_EXPORTER_OTLP_PROTOCOL" "OTEL_EXPORTER_OTLP_HEADERS" "OTEL_TRACES_SAMPLER" "OTEL_TRACES_SAMPLER_ARG" "OTEL_SERVICE_NAME" "OTEL_RESOURCE_ATTRIBUTES" "K8S_POD_NAME" -}}
{{- range .Values.extraEnv -}}
{{- if has .name $tracingEnv -}}
{{- fail (printf "extraEnv sets %s, which tracing.enabled=true sets too (the container would get it twice): use the tracing values (docs/deployment.md section 10) and drop it from extraEnv." .name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $routes := include "gateway.routesYaml" . | fromYaml -}}
{{- if hasKey $routes "Error" -}}
{{- fail (printf "routes: the routes file is not valid YAML: %s" $routes.Error) -}}
{{- end -}}
{{- if not (and (hasKey $routes "upstreams") (hasKey $routes "routes")) -}}
{{- fail "routes: the routes file needs 'upstreams' and 'routes' (the shape of config/gateway.yaml)." -}}
{{- end -}}
{{- range $name, $upstream := (include "gateway.upstreamsJson" . | fromJson) -}}
{{- if and (kindIs "map" $upstream) $upstream.api_key_env -}}
{{- $override := get $.Values.upstreamKeys.overrides $upstream.api_key_env -}}
{{- if and (not $override) (not $.Values.upstreamKeys.existingSecret) -}}
{{- fail (printf "routes.upstreams.%s.api_key_env=%s needs a Secret: set upstreamKeys.existingSecret (a Secret with the key %s) or upstreamKeys.overrides.%s.{secretName,key}." $name $upstream.api_key_env $upstream.api_key_env $upstream.api_key_env) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
