using System.Text.Json.Serialization;
using OnnxOutlierTools.Import;
using OnnxOutlierTools.Inspection;

namespace OnnxOutlierTools.Evaluation;

/// <summary>What <see cref="ModelEvaluator.Evaluate"/> measured, with every setting needed to reproduce it. Serializes to
/// the eval JSON (<see cref="CurrentSchemaVersion"/>; a property changes meaning or disappears only with a new version).
/// Metrics that do not apply are null (perplexity and KL for encoders, cosine for decoders, anything against a reference
/// without one, latency unless asked).</summary>
public sealed record EvalResult
{
    public const int CurrentSchemaVersion = 1;

    [JsonPropertyOrder(-1)]
    public int SchemaVersion { get; init; } = CurrentSchemaVersion;
    public string? ToolVersion { get; init; } = typeof(EvalResult).Assembly.GetName().Version?.ToString();
    public string? CommandLine { get; init; }
    public required EvaluatedModelFacts Model { get; init; }
    public EvaluatedModelFacts? Reference { get; init; }
    public required EvalSettings Settings { get; init; }
    public required WindowFacts Windows { get; init; }
    public PerplexityPair? Perplexity { get; init; }
    public DivergenceResult? Divergence { get; init; }
    public EmbeddingSimilarity? Embedding { get; init; }
    public LatencyPair? Latency { get; init; }
    public IReadOnlyList<string> Notes { get; init; } = [];

    public string ToJson() => JsonOutput.Serialize(this);

    /// <summary>Writes the JSON atomically (a temporary in the same folder, renamed into place).</summary>
    public void WriteJson(string path, bool overwrite = true) => AtomicTextFile.Write(path, ToJson() + "\n", overwrite);
}

/// <param name="Kind">decoder (next-token metrics) or encoder (embedding cosine).</param>
/// <param name="Vocabulary">Width of the logits; null for encoders.</param>
/// <param name="SinkPrefix">Token ids baked into the model by the sink bias (it is fed text without them); null when none.</param>
public sealed record EvaluatedModelFacts(string Path, string Kind, int? Vocabulary, IReadOnlyList<int>? SinkPrefix, string Device, string? DeviceNote);

/// <param name="BosMode">As asked (auto, window, document, off).</param>
/// <param name="BosResolved">What auto became.</param>
/// <param name="WindowPrefix">Ids in front of every window's text (BOS, or a sink prefix: fed to a model without it baked in).</param>
/// <param name="TextTokensPerWindow">Window less its prefix.</param>
/// <param name="ScoringRule">The rule for which tokens are scored, in words.</param>
public sealed record EvalSettings(
    string? Text, string? TextSha256, string? Ids, string? Tokenizer, string? TokenizerKind,
    int Window, int? Stride, int TextTokensPerWindow, int? MaxTokens,
    string BosMode, string BosResolved, string BosReason, bool DocumentBos, IReadOnlyList<int> WindowPrefix, string? PrefixSource,
    string ScoringRule, int BatchSize, string Device, string Optimization, LatencySettings? Latency);

/// <param name="StreamTokens">Tokens of the text stream taken (after --max-tokens); for ids, all ids given.</param>
/// <param name="DroppedTailTokens">Stream tokens after the last full window (not fed).</param>
/// <param name="ScoredTokens">Next-token predictions scored (decoders), or tokens compared (encoders).</param>
public sealed record WindowFacts(int Count, long StreamTokens, long DroppedTailTokens, long ScoredTokens, long FedTokens);

/// <summary>exp(mean next-token NLL) over the scored tokens; all arithmetic in float64.</summary>
/// <param name="NonFinitePositions">Scored positions whose logits hold an infinity or NaN (left out, for both models).</param>
public sealed record PerplexityScore(long ScoredTokens, double SumNll, double MeanNll, double Perplexity, long NonFinitePositions);

public sealed record PerplexityPair(PerplexityScore Model, PerplexityScore? Reference);

/// <summary>Next-token distributions of the model against the reference's, at the scored positions.</summary>
/// <param name="MeanKl">Mean of KL(reference || model) in nats.</param>
/// <param name="MaxKlWindow">Window and text position (index of the predicted token) of <see cref="MaxKl"/>.</param>
/// <param name="Top1Agreement">Fraction of positions whose argmax is the same (first index on ties).</param>
public sealed record DivergenceResult(long Positions, double MeanKl, double MaxKl, int MaxKlWindow, int MaxKlPosition, double Top1Agreement);

/// <summary>Encoders: cosine similarity of the model's hidden states to the reference's.</summary>
/// <param name="Output">The compared output.</param>
/// <param name="MeanTokenCosine">Mean over every token of every window of the per-token cosine.</param>
/// <param name="MeanPooledCosine">Mean over windows of the cosine of the mean-pooled embeddings (every position is real: no padding is fed).</param>
public sealed record EmbeddingSimilarity(string Output, long Tokens, double MeanTokenCosine, double MinTokenCosine, double MeanPooledCosine, double MinPooledCosine);

/// <summary>Medians of the timed runs (warm-up excluded), wall time of ONNX Runtime's Run with inputs prepared beforehand.</summary>
/// <param name="PromptTokens">Tokens of the prompt run (one window).</param>
/// <param name="DecodeTokens">Tokens decoded one at a time with the KV cache after a prompt of the window's other tokens;
/// 0 for models without a cache (then the decode figures are null).</param>
public sealed record LatencyResult(int PromptTokens, double PromptMs, double PromptMsMin, double PromptTokensPerSecond,
    int DecodeTokens, double? DecodeMsPerToken, double? DecodeTokensPerSecond, int Warmup, int Repetitions);

public sealed record LatencyPair(LatencyResult Model, LatencyResult? Reference);
