using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace OnnxOutlierTools.Mitigation.Smoothing;

/// <summary>Bounds and settings of an activation capture.</summary>
public sealed record ActivationCaptureOptions
{
    /// <summary>At most this many token rows are kept per tensor, whatever the corpus.</summary>
    public int MaxRowsPerTensor { get; init; } = 1024;
    /// <summary>All kept rows together stay below this (fp32 bytes); the row count per tensor is lowered to fit.</summary>
    public long MaxTotalBytes { get; init; } = 512L << 20;
    /// <summary>Seed of the token sample (<see cref="EvenSample"/>).</summary>
    public int Seed { get; init; }
    /// <summary>Windows of equal length run together, at most this many per run.</summary>
    public int BatchSize { get; init; } = 1;
    public SessionSettings? Session { get; init; }
    /// <summary>The token-id input (the structure's Inputs.InputIds); default "input_ids".</summary>
    public string? TokenInput { get; init; }
    public CancellationToken Cancellation { get; init; }
}

/// <summary>Captures linear inputs (the smoothing sites' X) on calibration windows run through ONNX Runtime. Each requested
/// tensor becomes an extra fp32 output (through a Cast, so fp16/bf16 models and values without type information work alike; a
/// fused Skip* norm's unemitted output is materialized with <see cref="Node.EnsureOutput"/>, as the probes do), the model is
/// opened in memory (<see cref="InMemoryModel"/>: nothing is written, external weights are read in place), and the extra outputs
/// and Casts are removed from <paramref name="model"/> again right after; materialized outputs stay, unused. Windows are fed as
/// calibration feeds them (<see cref="FeedPlan"/>: never padded; step models one token at a time with their cache).
/// <para>Memory is bounded whatever the corpus: the same R token rows are kept for every tensor, R = min(MaxRowsPerTensor,
/// tokens, MaxTotalBytes / (4 x the channels of all tensors)), drawn by <see cref="EvenSample"/> (seeded, one token from each of
/// R equal strata of the run's tokens, windows concatenated); the per-channel max |x| is exact over every token.</para></summary>
public static class ActivationCapture
{
    public const string Pass = "smoothing-capture";

    /// <summary>Captures the values named <paramref name="names"/> of the main graph.</summary>
    public static IReadOnlyList<CapturedActivation> Capture(Model model, IReadOnlyList<string> names, IReadOnlyList<int[]> windows, ActivationCaptureOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(names);
        var refs = names.Select(n => model.Graph.FindValue(n) is { } v ? TensorRef.Of(v)
            : throw new CalibrationException($"{Display(model)}: no tensor '{n}' in the main graph to capture")).ToArray();
        return Capture(model, refs, windows, options);
    }

    /// <summary>Captures <paramref name="tensors"/> (emitted or not), in order.</summary>
    public static IReadOnlyList<CapturedActivation> Capture(Model model, IReadOnlyList<TensorRef> tensors, IReadOnlyList<int[]> windows, ActivationCaptureOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(windows);
        options ??= new ActivationCaptureOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(options.BatchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxRowsPerTensor, 1);
        if (tensors.Count == 0) throw new ArgumentException("no tensors to capture", nameof(tensors));
        if (windows.Count == 0 || windows.All(w => w.Length == 0)) throw new CalibrationException("no calibration tokens to run");

        var values = tensors.Select(t => Resolve(model, t)).ToArray();
        var outputs = new string[values.Length];
        using (var session = OpenWithOutputs(model, values, outputs, options.Session))
        {
            var run = new CaptureRun(session, values.Select(v => v.Name).ToArray(), outputs, windows, options);
            return run.Execute();
        }
    }

    private static string Display(Model model) => model.SourcePath ?? model.Graph.Name;

    private static Value Resolve(Model model, TensorRef tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        var value = tensor.Value ?? tensor.Node?.EnsureOutput(tensor.OutputIndex, model.Names, "smooth.capture.tensor")
            ?? throw new ArgumentException($"{tensor} is neither a value nor a node's output");
        if (value.Graph != model.Graph)
            throw new CalibrationException($"{Display(model)}: '{value.Name}' is inside a subgraph ({value.Graph.Name}); only main-graph tensors can be fetched as outputs");
        if (value.IsInitializer) throw new CalibrationException($"{Display(model)}: '{value.Name}' is an initializer, not an activation");
        return value;
    }

    /// <summary>Adds one fp32 output per distinct value, opens the session, then takes the outputs and Casts out again.</summary>
    private static ModelSession OpenWithOutputs(Model model, Value[] values, string[] outputNames, SessionSettings? settings)
    {
        var graph = model.Graph;
        int firstOutput = graph.Outputs.Count;
        var casts = new List<Node>();
        var editor = model.Edit(origin: new NodeOrigin(Pass));
        var byValue = new Dictionary<Value, string>();
        try
        {
            for (int i = 0; i < values.Length; i++)
            {
                if (!byValue.TryGetValue(values[i], out var name))
                {
                    var cast = editor.AddNode("Cast", [values[i]], [Attr.Int("to", (long)TensorDataType.Float)],
                        outputs: [$"smooth.capture.{values[i].Name}"]);
                    casts.Add(cast);
                    var output = cast.Outputs[0]!;
                    output.SetTensorType(TensorDataType.Float, null);
                    graph.AddOutput(output);
                    byValue[values[i]] = name = output.Name;
                }
                outputNames[i] = name;
            }
            return InMemoryModel.Open(model, settings);
        }
        finally
        {
            while (graph.Outputs.Count > firstOutput) graph.RemoveOutput(graph.Outputs.Count - 1);
            for (int i = casts.Count - 1; i >= 0; i--) graph.Remove(casts[i]);
        }
    }

    /// <summary>One pass over the windows, keeping the sampled rows and the exact channel maxima of every tensor.</summary>
    private sealed class CaptureRun
    {
        private readonly ModelSession _session;
        private readonly string[] _names, _outputs;
        private readonly IReadOnlyList<int[]> _windows;
        private readonly ActivationCaptureOptions _options;
        private readonly FeedPlan _plan;
        private readonly long _tokens;
        private int[]? _selected;
        private int[] _channels = [];
        private float[][] _rows = [], _max = [];
        private int _kept;

        public CaptureRun(ModelSession session, string[] names, string[] outputs, IReadOnlyList<int[]> windows, ActivationCaptureOptions options)
        {
            _session = session;
            _names = names;
            _outputs = outputs;
            _windows = windows;
            _options = options;
            _plan = FeedPlan.Create(session.ModelPath, session.Inputs, session.OutputNames, options.TokenInput);
            if (_plan.FixedSequenceLength is long fixedLength && fixedLength != 1 && windows.Any(w => w.Length != 0 && w.Length != fixedLength))
                throw new CalibrationException($"{session.ModelPath}: the model takes exactly {fixedLength} tokens per sequence; use windows of {fixedLength}");
            _tokens = windows.Sum(w => (long)w.Length);
        }

        public IReadOnlyList<CapturedActivation> Execute()
        {
            long start = 0;
            var starts = new long[_windows.Count];
            for (int w = 0; w < _windows.Count; w++) { starts[w] = start; start += _windows[w].Length; }
            if (_plan.StepMode)
            {
                for (int w = 0; w < _windows.Count; w++) RunSteps(_windows[w], starts[w]);
            }
            else
            {
                foreach (var batch in Batches()) RunBatch(batch, starts);
            }
            var result = new CapturedActivation[_names.Length];
            for (int i = 0; i < _names.Length; i++)
            {
                var max = Array.ConvertAll(_max[i], v => (double)v);
                result[i] = new CapturedActivation(_names[i], _channels[i], _rows[i], max, _tokens, _selected!.ToArray());
            }
            return result;
        }

        private void RunBatch(List<int> batch, long[] starts)
        {
            _options.Cancellation.ThrowIfCancellationRequested();
            int sequence = _windows[batch[0]].Length;
            var ids = new int[batch.Count * sequence];
            for (int r = 0; r < batch.Count; r++) _windows[batch[r]].CopyTo(ids, r * sequence);
            using var outputs = _session.RunWithoutCopy(_plan.Build(batch.Count, sequence, ids, 0, null), _outputs.Distinct());
            var tokenOf = new long[ids.Length];
            for (int r = 0; r < batch.Count; r++)
                for (int t = 0; t < sequence; t++) tokenOf[r * sequence + t] = starts[batch[r]] + t;
            Take(outputs, tokenOf);
        }

        private void RunSteps(int[] ids, long start)
        {
            var requested = _outputs.Distinct().Concat(_plan.PresentToPast.Keys).ToArray();
            Dictionary<string, TensorData>? cache = null;
            for (int t = 0; t < ids.Length; t++)
            {
                _options.Cancellation.ThrowIfCancellationRequested();
                using var outputs = _session.RunWithoutCopy(_plan.Build(1, 1, ids.AsSpan(t, 1), t, cache), requested);
                Take(outputs, [start + t]);
                cache = _plan.PresentToPast.ToDictionary(p => p.Value, p => new TensorData(p.Value, outputs[p.Key].ToArrayTensor()));
            }
        }

        /// <summary>Rows of one run (token index of each in <paramref name="tokenOf"/>, ascending) into the maxima and the sample.</summary>
        private void Take(SessionOutputs outputs, long[] tokenOf)
        {
            var tensors = _outputs.Select(o => outputs[o]).ToArray();
            if (_selected is null) Start(tensors);
            int keptBefore = _kept;
            for (int i = 0; i < tensors.Length; i++)
            {
                var tensor = tensors[i];
                int channels = _channels[i];
                if (tensor.Dims.Count == 0 || tensor.Dims[^1] != channels || tensor.ElementCount != (long)channels * tokenOf.Length)
                    throw new CalibrationException($"{_session.ModelPath}: '{_names[i]}' has shape [{string.Join(",", tensor.Dims)}] on a run of " +
                        $"{tokenOf.Length} tokens; a linear input of {channels} channels per token was expected");
                var data = tensor.AsSpan<float>();
                var magnitude = new float[channels];
                int kept = keptBefore;
                for (int r = 0; r < tokenOf.Length; r++)
                {
                    var row = data.Slice(r * channels, channels);
                    TensorPrimitives.Abs(row, magnitude);
                    TensorPrimitives.Max(_max[i], magnitude, _max[i]);
                    if (kept < _selected!.Length && _selected[kept] == tokenOf[r])
                    {
                        row.CopyTo(_rows[i].AsSpan(kept * channels, channels));
                        kept++;
                    }
                }
                if (i == tensors.Length - 1) _kept = kept;
            }
        }

        /// <summary>At the first run the channels are known: size the sample and the buffers.</summary>
        private void Start(OrtTensor[] tensors)
        {
            _channels = tensors.Select((t, i) => t.Dims.Count > 0 && t.Dims[^1] > 0 ? checked((int)t.Dims[^1])
                : throw new CalibrationException($"{_session.ModelPath}: '{_names[i]}' has shape [{string.Join(",", t.Dims)}], not [..., channels]")).ToArray();
            long bytesPerRow = 4L * _channels.Sum(c => (long)c);
            long rows = Math.Min(Math.Min(_options.MaxRowsPerTensor, _tokens), Math.Max(1, _options.MaxTotalBytes / bytesPerRow));
            _selected = EvenSample.Indices(_tokens, (int)rows, _options.Seed);
            _rows = _channels.Select(c => new float[(long)_selected.Length * c]).ToArray();
            _max = _channels.Select(c => new float[c]).ToArray();
        }

        /// <summary>Consecutive windows of one length, up to the batch size per run (empty windows skipped).</summary>
        private IEnumerable<List<int>> Batches()
        {
            var current = new List<int>();
            for (int i = 0; i < _windows.Count; i++)
            {
                if (_windows[i].Length == 0) continue;
                if (current.Count > 0 && (current.Count == _options.BatchSize || _windows[current[0]].Length != _windows[i].Length))
                {
                    yield return current;
                    current = [];
                }
                current.Add(i);
            }
            if (current.Count > 0) yield return current;
        }
    }
}
