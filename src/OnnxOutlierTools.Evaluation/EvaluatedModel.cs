using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Mitigation.SinkBias;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Evaluation;

/// <summary>One model as the evaluation needs it: an ONNX Runtime session and the facts read from the file once (decoder
/// or encoder, the logits output and its width, the token table's rows, the context, a baked sink prefix). The structure
/// need not be recognized (a quantized model may not be): the outputs then decide.</summary>
internal sealed class EvaluatedModel : IDisposable
{
    private EvaluatedModel(string path, ModelSession session, bool isEncoder, string? logitsOutput, string? embeddingOutput, int? vocabulary,
        int? embeddingRows, ModelLimit? context, IReadOnlyList<int>? sinkPrefix, string? tokenInput)
    {
        Path = path;
        Session = session;
        IsEncoder = isEncoder;
        LogitsOutput = logitsOutput;
        EmbeddingOutput = embeddingOutput;
        Vocabulary = vocabulary;
        EmbeddingRows = embeddingRows;
        Context = context;
        SinkPrefix = sinkPrefix;
        TokenInput = tokenInput;
    }

    public string Path { get; }
    public ModelSession Session { get; }
    public bool IsEncoder { get; }
    public string? LogitsOutput { get; }
    /// <summary>Encoders: the per-token hidden states compared by cosine (last_hidden_state, else the first rank-3 float output).</summary>
    public string? EmbeddingOutput { get; }
    /// <summary>Width of the logits (the output's static last axis, else the LM head's out features); null when unknown.</summary>
    public int? Vocabulary { get; }
    public int? EmbeddingRows { get; }
    public ModelLimit? Context { get; }
    /// <summary>The baked sink prefix (<see cref="SinkContract"/>): the model is fed text without it.</summary>
    public IReadOnlyList<int>? SinkPrefix { get; }
    public string? TokenInput { get; }

    /// <summary>The ids a window's tokens may take: below both the logits' width and the token table's rows.</summary>
    public int? IdLimit => Vocabulary is int v ? Math.Min(v, EmbeddingRows ?? v) : EmbeddingRows;

    public static EvaluatedModel Open(string path, SessionSettings settings)
    {
        string located = ModelLocator.Locate(path);
        bool? encoder;
        int? rows, headWidth;
        ModelLimit? context;
        IReadOnlyList<int>? prefix;
        string? tokenInput;
        using (var model = ModelReader.Load(located))
        {
            var structure = StructureRecognizer.Recognize(model, System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(located))).Structure;
            encoder = structure is null ? null : structure.Architecture == ModelArchitecture.Encoder;
            rows = structure is null ? null : ModelLimits.Vocabulary(structure) is { } r ? checked((int)r.Value) : null;
            headWidth = structure?.LmHead is { } head ? checked((int)head.OutFeatures) : null;
            context = structure is null ? null : ModelLimits.Context(model, structure);
            tokenInput = structure?.Inputs.InputIds?.Name;
            try { prefix = SinkContract.PrefixOf(model); }
            catch (FormatException) { throw new EvaluationInputException($"{located}: its metadata {SinkContract.PrefixKey} is not a list of token ids"); }
        }
        var session = SessionFactory.Open(located, settings);
        try
        {
            var outputs = session.Session.OutputMetadata;
            string? logits = outputs.Keys.FirstOrDefault(n => n == "logits") ?? outputs.Keys.FirstOrDefault(n => n.Contains("logits", StringComparison.OrdinalIgnoreCase));
            bool isEncoder = encoder ?? logits is null;
            string? embedding = null;
            if (isEncoder)
            {
                embedding = outputs.Keys.FirstOrDefault(n => n == "last_hidden_state")
                    ?? outputs.FirstOrDefault(o => o.Value.Dimensions.Length == 3 && o.Value.ElementDataType is Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float
                        or Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float16).Key
                    ?? throw new EvaluationInputException($"{located}: an encoder without a [batch, sequence, hidden] output to compare (outputs: {string.Join(", ", outputs.Keys)})");
                logits = null;
            }
            int? width = logits is not null && outputs[logits].Dimensions is { Length: > 0 } dims && dims[^1] > 0 ? dims[^1] : headWidth;
            return new EvaluatedModel(System.IO.Path.GetFullPath(located), session, isEncoder, logits, embedding, isEncoder ? null : width, rows, context, prefix, tokenInput);
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    public void Dispose() => Session.Dispose();
}
