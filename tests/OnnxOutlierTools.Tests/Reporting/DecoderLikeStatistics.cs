using OnnxOutlierTools.Probes;

namespace OnnxOutlierTools.Tests.Reporting;

/// <summary>Calibration statistics shaped like a small pre-norm decoder's, made the way the runner makes them: activation
/// tensors are generated (seeded Gaussian noise plus planted structure), reduced on the host exactly as the probe outputs
/// define (<see cref="ProbeStatistic"/>), and merged batch by batch through <see cref="PointStatistics"/>'s own merge API.
/// Planted: a massive activation of about -300 in channel 7 on the first token (and about 150 on the first ".") from
/// block 1's output on, born at block 1's down-projection input (neuron 42); a persistent channel-wise outlier in channel
/// 12 of every attention and FFN input (a large norm gain); head 2 of blocks 1.. an attention sink on position 0.</summary>
internal static class DecoderLikeStatistics
{
    public const int Blocks = 5, Channels = 64, FfnChannels = 172, Heads = 4, Positions = 8;
    public const int MassiveChannel = 7, SecondMassiveChannel = 23, GainChannel = 12, BirthNeuron = 42, SinkHead = 2;
    public const int BosId = 1, PeriodId = 46, NewlineId = 13;
    private const int Windows = 4, SequenceLength = 32, BatchRows = 2, TopK = 32;

    public static CalibrationStatistics Build(IReadOnlyDictionary<int, string>? tokenTexts = null)
    {
        var manifest = Manifest();
        var statistics = new CalibrationStatistics(manifest);
        foreach (var point in manifest.Points)
            statistics.Points[point.Id] = new PointStatistics(point.Id, (int)(point.Channels ?? 0), TopK);
        var random = new Random(20260303);
        for (int first = 0; first < Windows; first += BatchRows)
        {
            var tokens = Tokens(first, random);
            foreach (var point in manifest.Points)
            {
                var stats = statistics.Points[point.Id];
                if (point.Kind == ProbeKind.AttentionProbabilities)
                {
                    var mass = AttentionMass(point.Block!.Value);
                    stats.AddAttentionBatch(mass, BatchRows, Heads, Positions, SequenceLength);
                }
                else
                {
                    var x = Activation(point, tokens, random);
                    Reduce(x, tokens, (int)point.Channels!.Value, stats);
                }
            }
        }
        statistics.Windows = Windows;
        statistics.Tokens = (long)Windows * SequenceLength;
        foreach (var (id, text) in tokenTexts ?? DefaultTexts()) statistics.TokenTexts[id] = text;
        return statistics;
    }

    public static IReadOnlyDictionary<int, string> DefaultTexts()
    {
        var texts = new Dictionary<int, string> { [BosId] = "<s>", [PeriodId] = ".", [NewlineId] = "\n" };
        string[] words = ["▁Once", "▁upon", "▁a", "▁time", "▁there", "▁was", "▁little", "▁girl", "▁named", "▁Lily", "▁she", "▁liked", "▁to", "▁play", "▁outside", "▁with", "▁her", "▁dog"];
        for (int id = 100; id < 100 + words.Length; id++) texts[id] = words[id - 100];
        return texts;
    }

    private static ProbeManifest Manifest()
    {
        var points = new List<ProbePoint> { Point("embedding", ProbeKind.Embedding, null, "embedding.output", Channels) };
        for (int b = 0; b < Blocks; b++)
        {
            points.Add(Point($"block{b}.attention-input", ProbeKind.AttentionInput, b, "attentionNorm.output", Channels, [$"model.layers.{b}.attn.q_proj.weight", $"model.layers.{b}.attn.k_proj.weight", $"model.layers.{b}.attn.v_proj.weight"]));
            points.Add(Point($"block{b}.attention", ProbeKind.AttentionProbabilities, b, "attention.probabilities", null) with { Heads = Heads, Source = "softmax" });
            points.Add(Point($"block{b}.o-input", ProbeKind.OutputProjectionInput, b, "attention.o.input", Channels, [$"model.layers.{b}.attn.o_proj.weight"]));
            points.Add(Point($"block{b}.residual-sum", ProbeKind.ResidualSum, b, "attentionResidual.output", Channels));
            points.Add(Point($"block{b}.ffn-input", ProbeKind.FfnInput, b, "ffnNorm.output", Channels, [$"model.layers.{b}.mlp.gate_proj.weight", $"model.layers.{b}.mlp.up_proj.weight"]));
            points.Add(Point($"block{b}.down-input", ProbeKind.DownInput, b, "ffn.down.input", FfnChannels, [$"model.layers.{b}.mlp.down_proj.weight"]));
            points.Add(Point($"block{b}.residual", ProbeKind.Residual, b, "residualOut", Channels));
        }
        return new ProbeManifest
        {
            Model = "stories-planted/model.onnx",
            Settings = new ProbeSettings { TopK = TopK, AttentionPositions = Positions },
            Points = points,
            Skipped = [new SkippedProbe("block0.attention-fused", ProbeKind.AttentionProbabilities, 0, "example: GroupQueryAttention applies rotary inside the op")],
            OriginalOutputs = ["logits"],
        };
    }

    private static ProbePoint Point(string id, ProbeKind kind, int? block, string role, int? channels, IReadOnlyList<string>? readBy = null) => new()
    {
        Id = id,
        Kind = kind,
        Block = block,
        Role = role,
        Tensor = $"/model/{id.Replace('.', '/')}/output_0",
        Channels = channels,
        ReadBy = readBy ?? [],
        Outputs = kind == ProbeKind.AttentionProbabilities
            ? new Dictionary<ProbeStatistic, string> { [ProbeStatistic.AttentionMass] = $"probe/{id}/attention_mass" }
            : Enum.GetValues<ProbeStatistic>().Where(s => s != ProbeStatistic.AttentionMass).ToDictionary(s => s, s => $"probe/{id}/{s}"),
    };

    private static BatchTokens Tokens(int firstWindow, Random random)
    {
        var ids = new int[BatchRows * SequenceLength];
        for (int row = 0; row < BatchRows; row++)
            for (int s = 0; s < SequenceLength; s++)
                ids[row * SequenceLength + s] = s == 0 ? BosId : s % 11 == 10 ? PeriodId : s % 17 == 16 ? NewlineId : 100 + random.Next(18);
        return new BatchTokens([firstWindow, firstWindow + 1], SequenceLength, ids);
    }

    /// <summary>x[row, s, c] for one point and batch.</summary>
    private static double[] Activation(ProbePoint point, BatchTokens tokens, Random random)
    {
        int c = (int)point.Channels!.Value, b = point.Block ?? -1;
        var x = new double[tokens.Batch * tokens.SequenceLength * c];
        double scale = point.Kind switch
        {
            ProbeKind.Embedding => 0.05,
            ProbeKind.Residual or ProbeKind.ResidualSum => 0.3 * (b + 1),
            ProbeKind.DownInput => 0.08,
            _ => 0.7,
        };
        for (int row = 0; row < tokens.Batch; row++)
            for (int s = 0; s < tokens.SequenceLength; s++)
            {
                int at = (row * tokens.SequenceLength + s) * c;
                for (int ch = 0; ch < c; ch++) x[at + ch] = scale * Gaussian(random);
                int id = tokens.Ids[row * tokens.SequenceLength + s];
                // Carried by the stream from block 1's output on (born in block 1's FFN), so block 1's attention
                // midpoint does not have it yet and block 2's does.
                bool carries = point.Kind == ProbeKind.Residual && b >= 1 || point.Kind == ProbeKind.ResidualSum && b >= 2;
                if (carries && s == 0) { x[at + MassiveChannel] = -300 * (1 + 0.04 * b); x[at + SecondMassiveChannel] = 95 * (1 + 0.03 * b); }
                if (carries && id == PeriodId && s == 10) x[at + MassiveChannel] = -150;
                if (point.Kind == ProbeKind.DownInput && b == 1 && s == 0) x[at + BirthNeuron] = 38;
                if (point.Kind is ProbeKind.AttentionInput or ProbeKind.FfnInput) x[at + GainChannel] = 25 + 1.5 * Gaussian(random);
            }
        return x;
    }

    /// <summary>Per-head mass summed over queries on each of the first positions: causal uniform heads, and a sink head
    /// that puts 0.9 of every query's probability on position 0.</summary>
    private static float[] AttentionMass(int block)
    {
        var mass = new float[BatchRows * Heads * Positions];
        for (int row = 0; row < BatchRows; row++)
            for (int h = 0; h < Heads; h++)
                for (int p = 0; p < Positions; p++)
                {
                    double sum = 0;
                    bool sink = h == SinkHead && block >= 1;
                    for (int q = p; q < SequenceLength; q++)
                        sum += sink ? (p == 0 ? 0.9 : 0) + 0.1 / (q + 1) : 1.0 / (q + 1);
                    mass[(row * Heads + h) * Positions + p] = (float)sum;
                }
        return mass;
    }

    /// <summary>The probes' reductions on the host (ProbeStatistic's definitions), then the merge.</summary>
    private static void Reduce(double[] x, BatchTokens tokens, int c, PointStatistics stats)
    {
        int rows = tokens.Batch * tokens.SequenceLength;
        float[] max = new float[c], min = new float[c], sum = new float[c], sum2 = new float[c], sum4 = new float[c], above = new float[c];
        Array.Fill(max, float.NegativeInfinity);
        Array.Fill(min, float.PositiveInfinity);
        float[] tokenMax = new float[rows], tokenMedian = new float[rows];
        long[] argMax = new long[rows];
        var abs = new double[c];
        for (int r = 0; r < rows; r++)
        {
            for (int ch = 0; ch < c; ch++)
            {
                double v = x[r * c + ch];
                max[ch] = Math.Max(max[ch], (float)v);
                min[ch] = Math.Min(min[ch], (float)v);
                sum[ch] += (float)v;
                sum2[ch] += (float)(v * v);
                sum4[ch] += (float)(v * v * v * v);
                if (Math.Abs(v) > 6) above[ch]++; // ProbeSettings.AboveThreshold's default
                abs[ch] = Math.Abs(v);
                if (abs[ch] > tokenMax[r]) { tokenMax[r] = (float)abs[ch]; argMax[r] = ch; }
            }
            Array.Sort(abs);
            tokenMedian[r] = (float)abs[c / 2];
        }
        var top = Enumerable.Range(0, x.Length).OrderByDescending(i => Math.Abs(x[i])).Take(Math.Min(TopK, x.Length)).ToArray();
        stats.AddActivationBatch(new ActivationBatch
        {
            ChannelMax = max,
            ChannelMin = min,
            ChannelSum = sum,
            ChannelSumSquares = sum2,
            ChannelSumFourth = sum4,
            ChannelAboveCount = above,
            TokenMaxAbs = tokenMax,
            TokenMedianAbs = tokenMedian,
            TokenArgMaxChannel = argMax,
            TopKAbs = top.Select(i => (float)Math.Abs(x[i])).ToArray(),
            TopKIndex = top.Select(i => (long)i).ToArray(),
            TopKValue = top.Select(i => (float)x[i]).ToArray(),
        }, tokens);
    }

    private static double Gaussian(Random random) =>
        Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
}
