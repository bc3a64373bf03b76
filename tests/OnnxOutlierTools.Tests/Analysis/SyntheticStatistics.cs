using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Analysis;

/// <summary>Calibration statistics made by hand: full activation tensors [B, S, C] (float64 here) reduced on the host
/// exactly as the probes document (ProbeStatistic), then merged with PointStatistics.AddActivationBatch, so the
/// analysis reads the same kind of statistics a real run gives, and a test knows every value behind them.</summary>
internal sealed class SyntheticStatistics
{
    public const int Batch = 2, Sequence = 8;
    private readonly List<ProbePoint> _points = [];
    private readonly Dictionary<string, PointStatistics> _stats = new(StringComparer.Ordinal);
    private readonly Random _rng;

    public SyntheticStatistics(int seed = 7, int topK = 32)
    {
        _rng = new Random(seed);
        TopK = topK;
        // Window w starts with BOS (id 1); position 5 holds "." (id 46); the rest are ordinary ids.
        Ids = new int[Batch * Sequence];
        for (int b = 0; b < Batch; b++)
            for (int s = 0; s < Sequence; s++)
                Ids[b * Sequence + s] = s == 0 ? 1 : s == 5 ? 46 : 100 + b * Sequence + s;
        Texts = new Dictionary<int, string> { [1] = "<s>", [46] = "." };
        foreach (int id in Ids.Where(i => i >= 100)) Texts[id] = $"w{id}";
    }

    public int TopK { get; }
    public int[] Ids { get; }
    public Dictionary<int, string> Texts { get; }
    public float AboveThreshold { get; init; } = 6f;

    /// <summary>Gaussian noise [B, S, C] with the given standard deviation (planting happens on the returned array).</summary>
    public double[,,] Noise(int channels, double sigma)
    {
        var x = new double[Batch, Sequence, channels];
        for (int b = 0; b < Batch; b++)
            for (int s = 0; s < Sequence; s++)
                for (int c = 0; c < channels; c++)
                {
                    double u1 = 1 - _rng.NextDouble(), u2 = _rng.NextDouble();
                    x[b, s, c] = sigma * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
                }
        return x;
    }

    /// <summary>Adds an activation point and feeds <paramref name="x"/> as one batch.</summary>
    public void Add(string id, ProbeKind kind, int? block, double[,,] x, string? tensor = null, IReadOnlyList<string>? readBy = null,
        IReadOnlyList<ProbeRoleRef>? alsoAs = null)
    {
        int channels = x.GetLength(2);
        _points.Add(new ProbePoint
        {
            Id = id, Kind = kind, Block = block, Role = kind.ToString(), Tensor = tensor ?? id, Channels = channels,
            ReadBy = readBy ?? [], Outputs = new Dictionary<ProbeStatistic, string>(), AlsoAs = alsoAs ?? [],
        });
        var stats = new PointStatistics(id, channels, TopK);
        Feed(stats, x);
        _stats[id] = stats;
    }

    /// <summary>Adds an attention point whose per-head mass on each of the first positions is <paramref name="meanMass"/>
    /// [head][position] for every query (fed as the [B, H, P] sums over S queries).</summary>
    public void AddAttention(string id, int block, double[][] meanMass)
    {
        int heads = meanMass.Length, positions = meanMass[0].Length;
        _points.Add(new ProbePoint
        {
            Id = id, Kind = ProbeKind.AttentionProbabilities, Block = block, Role = "attention.probabilities", Tensor = id, Heads = heads,
            Outputs = new Dictionary<ProbeStatistic, string>(),
        });
        var mass = new float[Batch * heads * positions];
        for (int b = 0; b < Batch; b++)
            for (int h = 0; h < heads; h++)
                for (int p = 0; p < positions; p++)
                    mass[(b * heads + h) * positions + p] = (float)(meanMass[h][p] * Sequence);
        var stats = new PointStatistics(id, 0, TopK);
        stats.AddAttentionBatch(mass, Batch, heads, positions, Sequence);
        _stats[id] = stats;
    }

    public CalibrationStatistics Build()
    {
        var manifest = new ProbeManifest
        {
            Model = "synthetic.onnx", Settings = new ProbeSettings { TopK = TopK, AboveThreshold = AboveThreshold },
            Points = _points.ToList(), OriginalOutputs = ["logits"],
        };
        var statistics = new CalibrationStatistics(manifest) { Tokens = Batch * Sequence, Windows = Batch };
        foreach (var (id, s) in _stats) statistics.Points[id] = s;
        foreach (var (id, text) in Texts) statistics.TokenTexts[id] = text;
        return statistics;
    }

    /// <summary>The per-token median |x| as the probes define it: element C/2 of the ascending |x| (float64 reference).</summary>
    public static double TokenMedian(double[,,] x, int b, int s)
    {
        int c = x.GetLength(2);
        var abs = Enumerable.Range(0, c).Select(i => Math.Abs(x[b, s, i])).Order().ToArray();
        return abs[c / 2];
    }

    private void Feed(PointStatistics stats, double[,,] x)
    {
        int c = x.GetLength(2), rows = Batch * Sequence;
        var max = new float[c]; var min = new float[c]; var sum = new float[c]; var sq = new float[c]; var fourth = new float[c]; var above = new float[c];
        Array.Fill(max, float.NegativeInfinity); Array.Fill(min, float.PositiveInfinity);
        var tokenMax = new float[rows]; var tokenMedian = new float[rows]; var argMax = new long[rows];
        var all = new List<(double Abs, long Index, double Value)>();
        for (int b = 0; b < Batch; b++)
            for (int s = 0; s < Sequence; s++)
            {
                int row = b * Sequence + s;
                for (int i = 0; i < c; i++)
                {
                    double v = x[b, s, i];
                    max[i] = Math.Max(max[i], (float)v); min[i] = Math.Min(min[i], (float)v);
                    sum[i] += (float)v; sq[i] += (float)(v * v); fourth[i] += (float)(v * v * v * v);
                    if (Math.Abs(v) > AboveThreshold) above[i]++;
                    if (Math.Abs(v) > tokenMax[row]) { tokenMax[row] = (float)Math.Abs(v); argMax[row] = i; }
                    all.Add((Math.Abs(v), (long)row * c + i, v));
                }
                tokenMedian[row] = (float)TokenMedian(x, b, s);
            }
        var top = all.OrderByDescending(e => e.Abs).Take(TopK).ToArray();
        stats.AddActivationBatch(new ActivationBatch
        {
            ChannelMax = max, ChannelMin = min, ChannelSum = sum, ChannelSumSquares = sq, ChannelSumFourth = fourth, ChannelAboveCount = above,
            TokenMaxAbs = tokenMax, TokenMedianAbs = tokenMedian, TokenArgMaxChannel = argMax,
            TopKAbs = top.Select(e => (float)e.Abs).ToArray(), TopKIndex = top.Select(e => e.Index).ToArray(), TopKValue = top.Select(e => (float)e.Value).ToArray(),
        }, new BatchTokens(Enumerable.Range(0, Batch).ToArray(), Sequence, Ids));
    }
}

/// <summary>onnx-models/tiny-llama (2 blocks, dim 64, FFN 176, decomposed Llama) loaded and recognized; tests edit its
/// initializers in memory (never on disk) to plant weights.</summary>
internal sealed class TinyLlama : IDisposable
{
    public TinyLlama()
    {
        Model = ModelReader.Load(Path.Combine(RepoRoot(), "onnx-models", "tiny-llama", "model.onnx"));
        var result = StructureRecognizer.Recognize(Model);
        Assert.True(result.Recognized, result.Message);
        Structure = result.Structure!;
    }

    public Model Model { get; }
    public ModelStructure Structure { get; set; }

    /// <summary>The weight as float[] in its stored layout.</summary>
    public static float[] Read(Value initializer) => initializer.ConstValue!.ToSingleArray();

    public void Write(Value initializer, float[] data) =>
        initializer.Graph.SetInitializerData(initializer, ArrayTensor.Create<float>(data, initializer.ConstValue!.Dims.ToArray()));

    /// <summary>Adds the probe points the probe pass places for a pre-norm decoder (graph order: embedding, then per
    /// block attention input, attention residual sum, FFN input, down input, residual), each probing the structure's
    /// tensor; <paramref name="supply"/> gives the array of a point (null: Gaussian noise).</summary>
    public void AddPoints(SyntheticStatistics s, Func<ProbeKind, int?, double[,,]?> supply, double sigma = 0.1)
    {
        double[,,] Get(ProbeKind kind, int? block, int channels) => supply(kind, block) ?? s.Noise(channels, sigma);
        s.Add("embedding", ProbeKind.Embedding, null, Get(ProbeKind.Embedding, null, 64), Structure.Embedding!.Output.Name);
        foreach (var b in Structure.Blocks)
        {
            int i = b.Index;
            s.Add($"block{i}.attention-input", ProbeKind.AttentionInput, i, Get(ProbeKind.AttentionInput, i, 64), b.AttentionNorm!.Output.Name);
            s.Add($"block{i}.residual-sum.attention", ProbeKind.ResidualSum, i, Get(ProbeKind.ResidualSum, i, 64), b.AttentionResidual!.Value!.Name);
            s.Add($"block{i}.ffn-input", ProbeKind.FfnInput, i, Get(ProbeKind.FfnInput, i, 64), b.FfnNorm!.Output.Name);
            s.Add($"block{i}.down-input", ProbeKind.DownInput, i, Get(ProbeKind.DownInput, i, 176), b.Ffn!.DownInput.Name);
            s.Add($"block{i}.residual", ProbeKind.Residual, i, Get(ProbeKind.Residual, i, 64), b.ResidualOut.Value!.Name);
        }
    }

    /// <summary>The structure with block <paramref name="index"/> replaced.</summary>
    public void EditBlock(int index, Func<BlockRole, BlockRole> edit) =>
        Structure = Structure with { Blocks = Structure.Blocks.Select(b => b.Index == index ? edit(b) : b).ToList() };

    public void Dispose() => Model.Dispose();

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "OnnxOutlierTools.sln"))) return dir.FullName;
        throw new InvalidOperationException("repository root (OnnxOutlierTools.sln) not found");
    }
}
