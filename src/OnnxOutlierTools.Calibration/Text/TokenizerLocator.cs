using OnnxOutlierTools.IO;

namespace OnnxOutlierTools.Calibration.Text;

/// <summary>
/// Finds and loads the tokenizer for a model. <c>--tokenizer</c> names a file or a folder; without it the
/// model's folder is searched, and for the <c>onnx/</c> subfolder layout of Hugging Face exports its
/// parent too. In each folder the first present of: tokenizer.json, tokenizer.model, vocab.txt, one
/// *.tiktoken file, tokenizer.bin, one tok*.bin (llama2.c). Special ids come from the format, then
/// tokenizer_config.json / special_tokens_map.json beside the tokenizer file, then, for a BOS or EOS the
/// tokenizer leaves undefined, the model's config.json / genai_config.json (<see cref="ModelFolderFacts"/>);
/// where a config id disagrees with the tokenizer, the tokenizer wins and <see cref="TextTokenizer.Notes"/>
/// says so.
/// </summary>
public static class TokenizerLocator
{
    /// <summary>The fixed names searched in each folder, in order; then *.tiktoken, then tok*.bin.</summary>
    public static IReadOnlyList<string> FileNames { get; } = ["tokenizer.json", "tokenizer.model", "vocab.txt", "*.tiktoken", "tokenizer.bin", "tok*.bin"];

    /// <summary>Finds (<see cref="Find"/>) and loads (<see cref="LoadFile"/>) the tokenizer for
    /// <paramref name="modelPath"/>.</summary>
    public static TextTokenizer Load(string? tokenizerPath, string modelPath) =>
        LoadFile(Find(tokenizerPath, modelPath), ModelFacts(modelPath));

    /// <summary>The tokenizer file to use: <paramref name="tokenizerPath"/> itself when it is a file, else
    /// the first match in that folder, else in the folders beside the model.</summary>
    /// <exception cref="TokenizerNotFoundException">nothing found; the message names the folders searched.</exception>
    public static string Find(string? tokenizerPath, string modelPath)
    {
        if (tokenizerPath is not null)
        {
            var facts = FileFacts.Of(tokenizerPath);
            if (facts.Kind == FileKind.Regular) return tokenizerPath;
            if (facts.Kind != FileKind.Directory)
                throw new TokenizerNotFoundException(tokenizerPath, facts.Exists ? $"is {facts.KindText}, not a tokenizer file or folder" : "does not exist");
            return FindIn(tokenizerPath) ?? throw new TokenizerNotFoundException(tokenizerPath, $"no tokenizer in this folder (looked for {string.Join(", ", FileNames)})");
        }
        var folders = SearchFolders(modelPath);
        foreach (string folder in folders)
            if (FindIn(folder) is { } found) return found;
        throw new TokenizerNotFoundException(modelPath,
            $"no tokenizer found (looked in {string.Join(" and ", folders.Select(f => f.Length == 0 ? "." : f))} for {string.Join(", ", FileNames)}); pass --tokenizer FILE or --ids FILE.json");
    }

    /// <summary>The folders searched for a model without --tokenizer: its own, and its parent when the
    /// model sits in an "onnx" subfolder.</summary>
    public static IReadOnlyList<string> SearchFolders(string modelPath)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(modelPath)) ?? ".";
        var folders = new List<string> { folder };
        if (string.Equals(Path.GetFileName(folder), "onnx", StringComparison.OrdinalIgnoreCase) && Path.GetDirectoryName(folder) is { } parent) folders.Add(parent);
        return folders;
    }

    /// <summary>The configuration facts of the folders beside the model (see <see cref="SearchFolders"/>).</summary>
    public static IReadOnlyList<ModelFolderFacts> ModelFacts(string modelPath) => SearchFolders(modelPath).Select(ModelFolderFacts.Read).ToArray();

    private static string? FindIn(string folder)
    {
        if (FileFacts.Of(folder).Kind != FileKind.Directory) return null;
        foreach (string name in FileNames)
        {
            if (!name.Contains('*'))
            {
                string path = Path.Combine(folder, name);
                if (FileFacts.Of(path).Kind == FileKind.Regular) return path;
                continue;
            }
            var matches = Directory.EnumerateFiles(folder, name).Where(p => FileFacts.Of(p).Kind == FileKind.Regular).Order(StringComparer.Ordinal).ToArray();
            if (matches.Length == 1) return matches[0];
            if (matches.Length > 1)
                throw new TokenizerNotFoundException(folder, $"holds {matches.Length} {name} files ({string.Join(", ", matches.Select(Path.GetFileName))}); pass the one to use with --tokenizer");
        }
        return null;
    }

    /// <summary>Loads a tokenizer file, its kind told by its name (tokenizer.json / *.json, *.model,
    /// vocab.txt / *.txt, *.tiktoken, *.bin), then resolves special ids and the BOS convention.</summary>
    public static TextTokenizer LoadFile(string path, IReadOnlyList<ModelFolderFacts>? modelFacts = null)
    {
        var facts = FileFacts.Of(path);
        if (facts.Kind != FileKind.Regular) throw new CalibrationInputException(path, facts.Exists ? $"is {facts.KindText}, not a tokenizer file" : "does not exist");
        string name = Path.GetFileName(path).ToLowerInvariant();
        string folder = Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".";
        var config = TokenizerConfig.Read(folder);
        TextTokenizer tokenizer = Path.GetExtension(name) switch
        {
            ".json" => HfTokenizerJson.Load(path),
            ".model" => SentencePieceModelTokenizer.Load(path),
            ".txt" => WordPieceTextTokenizer.FromVocabFile(path, config),
            ".tiktoken" => TiktokenTextTokenizer.Load(path),
            ".bin" => Llama2cTextTokenizer.Load(path),
            _ => throw new CalibrationInputException(path, "is not a tokenizer file this tool reads (tokenizer.json, tokenizer.model, vocab.txt, *.tiktoken, llama2.c tokenizer.bin)"),
        };
        SpecialTokenResolver.Apply(tokenizer, config, modelFacts ?? []);
        return tokenizer;
    }
}
