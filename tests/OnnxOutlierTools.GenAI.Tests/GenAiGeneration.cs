using Microsoft.ML.OnnxRuntimeGenAI;

namespace OnnxOutlierTools.GenAI.Tests;

/// <summary>What onnxruntime-genai generated: the prompt it ran (after its tokenizer, when given text) and the new tokens.</summary>
public sealed record GenAiResult(int[] PromptIds, int[] NewTokens, string NewText)
{
    public override string ToString() => $"prompt [{string.Join(",", PromptIds)}] -> [{string.Join(",", NewTokens)}] \"{NewText}\"";
}

/// <summary>Greedy generation in onnxruntime-genai itself, on the CPU provider, from a model folder as shipped
/// (genai_config.json, model, external data, tokenizer files). All genai tests go through this.</summary>
public static class GenAiGeneration
{
    /// <summary>Greedy from token ids, fed as given (no BOS added).</summary>
    public static GenAiResult Greedy(string folder, IReadOnlyList<int> promptIds, int maxNewTokens)
    {
        using var model = Load(folder);
        using var tokenizer = new Tokenizer(model);
        return Run(model, tokenizer, [.. promptIds], maxNewTokens);
    }

    /// <summary>Greedy from text, encoded by the folder's tokenizer in genai. genai 0.20 adds no special tokens
    /// unless asked (<paramref name="addSpecialTokens"/>, its <c>add_special_tokens</c> option), and then adds
    /// what tokenizer.json's post-processor template says; it does not read tokenizer_config.json's add_bos_token.</summary>
    public static GenAiResult Greedy(string folder, string text, int maxNewTokens, bool addSpecialTokens)
    {
        using var model = Load(folder);
        using var tokenizer = Tokenizer(model, addSpecialTokens);
        using var sequences = tokenizer.Encode(text);
        return Run(model, tokenizer, sequences[0].ToArray(), maxNewTokens);
    }

    /// <summary>The folder's tokenizer as genai loads it: ids of <paramref name="text"/> (see <see cref="Greedy(string, string, int, bool)"/>).</summary>
    public static int[] Encode(string folder, string text, bool addSpecialTokens)
    {
        using var tokenizer = OpenTokenizer(folder, addSpecialTokens);
        return tokenizer.Encode(text);
    }

    /// <summary>The folder's tokenizer in genai, loaded once for many texts.</summary>
    public static GenAiTokenizer OpenTokenizer(string folder, bool addSpecialTokens)
    {
        var model = Load(folder);
        return new GenAiTokenizer(model, Tokenizer(model, addSpecialTokens));
    }

    private static Tokenizer Tokenizer(Model model, bool addSpecialTokens)
    {
        var tokenizer = new Tokenizer(model);
        tokenizer.UpdateOptions(new() { ["add_special_tokens"] = addSpecialTokens ? "true" : "false" });
        return tokenizer;
    }

    /// <summary>The folder's tokenizer as genai loads it: the text of <paramref name="ids"/>.</summary>
    public static string Decode(string folder, IReadOnlyList<int> ids)
    {
        using var tokenizer = OpenTokenizer(folder, addSpecialTokens: false);
        return tokenizer.Decode(ids);
    }

    private static Model Load(string folder)
    {
        GenAiProcess.EnsureStarted();
        // The CPU provider whatever the config names, so a test means the same on every machine.
        using var config = new Config(folder);
        config.ClearProviders();
        return new Model(config);
    }

    private static GenAiResult Run(Model model, Tokenizer tokenizer, int[] prompt, int maxNewTokens)
    {
        using var parameters = new GeneratorParams(model);
        parameters.SetSearchOption("max_length", prompt.Length + maxNewTokens);
        parameters.SetSearchOption("do_sample", false);
        using var generator = new Generator(model, parameters);
        generator.AppendTokens(prompt);
        var generated = new List<int>();
        while (!generator.IsDone() && generated.Count < maxNewTokens)
        {
            generator.GenerateNextToken();
            generated.Add(generator.GetNextTokens()[0]);
        }
        return new GenAiResult(prompt, [.. generated], tokenizer.Decode([.. generated]));
    }
}

/// <summary>A genai tokenizer with the model it came from.</summary>
public sealed class GenAiTokenizer(Model model, Tokenizer tokenizer) : IDisposable
{
    public int[] Encode(string text)
    {
        using var sequences = tokenizer.Encode(text);
        return sequences[0].ToArray();
    }

    public string Decode(IReadOnlyList<int> ids) => tokenizer.Decode([.. ids]);

    public void Dispose()
    {
        tokenizer.Dispose();
        model.Dispose();
    }
}

/// <summary>genai wants one <see cref="OgaHandle"/> alive while it is used and disposed once at the end
/// (its shutdown); the process exit disposes it after every test has run.</summary>
internal static class GenAiProcess
{
    private static readonly Lazy<OgaHandle> s_handle = new(() =>
    {
        var handle = new OgaHandle();
        AppDomain.CurrentDomain.ProcessExit += (_, _) => handle.Dispose();
        return handle;
    });

    public static void EnsureStarted() => _ = s_handle.Value;
}
