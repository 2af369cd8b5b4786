using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using System.Xml;
using System.Xml.Linq;
using RetNet.Ilgpu.IO;

namespace RetNet.Ilgpu.DemoData;

/// <summary>The sizes of the two files <see cref="SdkCorpus.Write"/> wrote.</summary>
/// <param name="TrainBytes">UTF-8 bytes written to the training file.</param>
/// <param name="ValidationBytes">UTF-8 bytes written to the validation file.</param>
/// <param name="TrainParagraphs">Lines (paragraphs) in the training file.</param>
/// <param name="ValidationParagraphs">Lines (paragraphs) in the validation file.</param>
public sealed record SdkCorpusSplit(long TrainBytes, long ValidationBytes, int TrainParagraphs, int ValidationParagraphs);

/// <summary>
/// English prose that every machine with the .NET SDK already has: the XML documentation of the framework in the
/// newest Microsoft.NETCore.App.Ref pack (about 30 MB of XML for .NET 10), turned into plain text, one paragraph per
/// line. It lets training and its tests run on real language without downloading a dataset.
/// </summary>
/// <remarks>
/// Text comes from the summary, remarks, param, returns and value elements of each member, in file-name order and
/// document order within a file. References become readable names (<c>&lt;see cref="T:System.String"/&gt;</c> →
/// String, <c>&lt;paramref name="x"/&gt;</c> → x, <c>&lt;see langword="null"/&gt;</c> → null), code blocks are
/// dropped, para and list items start new paragraphs, and whitespace is collapsed. The documentation repeats itself
/// heavily ("The object to compare with the current object."), so each sentence is kept only the first time it
/// appears. Paragraphs that are not prose are dropped: fewer than three words, not starting with a letter or not
/// ending a sentence, or naming C functions and types (the hardware-intrinsic signatures). The output depends only on
/// the pack's files.
/// </remarks>
public static class SdkCorpus
{
    /// <summary>Every this-many-th paragraph (the 10th, 20th, …) goes to the validation file in <see cref="Write"/>.</summary>
    public const int ValidationEvery = 10;

    private const string RefPack = "Microsoft.NETCore.App.Ref";

    private static readonly HashSet<string> ProseElements = ["summary", "remarks", "param", "returns", "value"];
    private static readonly HashSet<string> BlockElements = ["para", "p", "list", "listheader", "item", "li", "ul", "ol", "br"];
    private static readonly Regex Whitespace = new(@"\s+", RegexOptions.Compiled | RegexOptions.CultureInvariant);

    // A few documents spell references as raw ids in their text or in a langword ("T:System.IO.IOException"); they
    // read as names too.
    private static readonly Regex RawReference = new(
        @"(?<![\w.])[TMPFE]:[A-Za-z_][\w.`#]*[\w`]", RegexOptions.Compiled | RegexOptions.CultureInvariant);

    private static readonly Regex CCode = new(
        @"\w_\w*\s*\(|\b\w+_t\b", RegexOptions.Compiled | RegexOptions.CultureInvariant);

    // A sentence ends at . ! or ? followed by whitespace and a capital letter, digit or quote: crude, but it only
    // decides what counts as a repeat, and it never splits inside "e.g. the" or "System.String".
    private static readonly Regex SentenceEnd = new(
        @"(?<=[.!?])\s+(?=[A-Z0-9""'(])", RegexOptions.Compiled | RegexOptions.CultureInvariant);

    /// <summary>
    /// The folder of XML documentation files in the newest Microsoft.NETCore.App.Ref pack of the SDK that is running
    /// this process or is on DOTNET_ROOT or PATH (packs/Microsoft.NETCore.App.Ref/&lt;version&gt;/ref/&lt;tfm&gt;).
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">No pack with XML files was found; the message names every folder searched.</exception>
    public static string Find()
    {
        var roots = CandidateRoots();
        var best = roots
            .SelectMany(Packs)
            .OrderByDescending(p => p.Version)
            .ThenByDescending(p => p.Prerelease is null)
            .ThenByDescending(p => p.Prerelease, StringComparer.Ordinal)
            .ThenByDescending(p => p.Framework)
            .FirstOrDefault();
        return best?.Folder ?? throw new DirectoryNotFoundException(
            $"No {RefPack} pack with XML documentation was found under any .NET root searched (looked for " +
            $"packs/{RefPack}/<version>/ref/<tfm>/*.xml in: {string.Join(", ", roots.Select(r => $"'{r}'"))}). " +
            "Install the .NET SDK or set DOTNET_ROOT to its folder.");
    }

    /// <summary>
    /// The corpus's paragraphs in order, deduplicated, read lazily from <paramref name="folder"/> (default
    /// <see cref="Find"/>).
    /// </summary>
    public static IEnumerable<string> Paragraphs(string? folder = null)
    {
        folder ??= Find();
        var files = Directory.GetFiles(folder, "*.xml").Order(StringComparer.Ordinal).ToArray();
        if (files.Length == 0)
            throw new DirectoryNotFoundException($"'{folder}' holds no XML documentation files.");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var kept = new List<string>();
        foreach (var file in files)
        {
            foreach (var raw in FileParagraphs(file))
            {
                kept.Clear();
                foreach (var sentence in SentenceEnd.Split(raw))
                    if (sentence.Length > 0 && seen.Add(sentence))
                        kept.Add(sentence);
                if (kept.Count == 0)
                    continue;
                var paragraph = string.Join(' ', kept);
                if (IsProse(paragraph))
                    yield return paragraph;
            }
        }
    }

    /// <summary>
    /// The first paragraphs of the corpus, one per line (each ending in '\n'), as many whole paragraphs as fit in
    /// <paramref name="maxBytes"/> UTF-8 bytes; a shorter request gives a prefix of a longer one.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">No SDK reference pack was found (see <see cref="Find"/>).</exception>
    public static string ExtractText(int maxBytes, string? folder = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBytes, 1);
        var text = new StringBuilder();
        long bytes = 0;
        foreach (var paragraph in Paragraphs(folder))
        {
            var size = Encoding.UTF8.GetByteCount(paragraph) + 1;
            if (bytes + size > maxBytes)
                break;
            text.Append(paragraph).Append('\n');
            bytes += size;
        }
        return text.ToString();
    }

    /// <summary>
    /// Writes a training file and a held-out validation file of corpus text, atomically: every
    /// <see cref="ValidationEvery"/>-th paragraph goes to validation, the rest to training, each file taking whole
    /// paragraphs in order until the next would pass its byte budget. Sentences are deduplicated across the whole
    /// corpus, so no sentence appears in both files.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">No SDK reference pack was found (see <see cref="Find"/>).</exception>
    /// <exception cref="InvalidDataException">Either file would be empty.</exception>
    public static SdkCorpusSplit Write(
        string trainPath, string validationPath, int trainBytes, int validationBytes, string? folder = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(trainPath);
        ArgumentException.ThrowIfNullOrWhiteSpace(validationPath);
        ArgumentOutOfRangeException.ThrowIfLessThan(trainBytes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(validationBytes, 1);
        var train = new Part(trainBytes);
        var validation = new Part(validationBytes);
        var index = 0;
        foreach (var paragraph in Paragraphs(folder))
        {
            var part = ++index % ValidationEvery == 0 ? validation : train;
            part.Offer(paragraph);
            if (train.Full && validation.Full)
                break;
        }
        if (train.Paragraphs == 0 || validation.Paragraphs == 0)
            throw new InvalidDataException(
                $"The SDK corpus gave {train.Paragraphs} training and {validation.Paragraphs} validation paragraphs " +
                "for the budgets asked; both need at least one.");
        AtomicFile.WriteAllText(trainPath, train.Text.ToString());
        AtomicFile.WriteAllText(validationPath, validation.Text.ToString());
        return new SdkCorpusSplit(train.Bytes, validation.Bytes, train.Paragraphs, validation.Paragraphs);
    }

    /// <summary>The readable name of a documentation reference: the last segment of a cref, or of a constructor its type.</summary>
    internal static string ReadableName(string cref)
    {
        var name = cref.Length > 2 && cref[1] == ':' ? cref[2..] : cref;
        var parenthesis = name.IndexOf('(');
        if (parenthesis >= 0)
            name = name[..parenthesis];
        var segments = name.Split('.', StringSplitOptions.RemoveEmptyEntries);
        if (segments.Length == 0)
            return name;
        var last = segments[^1];
        if (last is "#ctor" or "#cctor" && segments.Length > 1)
            last = segments[^2];
        // Explicit interface implementations spell the interface with '#': System#IDisposable#Dispose.
        last = last[(last.LastIndexOf('#') + 1)..];
        var tick = last.IndexOf('`');
        return tick > 0 ? last[..tick] : last;
    }

    private static IEnumerable<string> FileParagraphs(string file)
    {
        XDocument document;
        try
        {
            using var reader = XmlReader.Create(file, new XmlReaderSettings { DtdProcessing = DtdProcessing.Ignore, XmlResolver = null });
            document = XDocument.Load(reader);
        }
        catch (XmlException error)
        {
            throw new InvalidDataException($"SDK documentation file '{file}' is not well-formed XML: {error.Message}", error);
        }
        var paragraphs = new List<string>();
        foreach (var member in document.Descendants("member"))
            foreach (var element in member.Elements())
                if (ProseElements.Contains(element.Name.LocalName))
                {
                    var current = new StringBuilder();
                    AppendText(element, current, paragraphs);
                    Flush(current, paragraphs);
                }
        return paragraphs;
    }

    private static void AppendText(XElement element, StringBuilder current, List<string> paragraphs)
    {
        foreach (var node in element.Nodes())
        {
            if (node is XText text)
            {
                current.Append(ReadableText(text.Value));
                continue;
            }
            if (node is not XElement child)
                continue;
            switch (child.Name.LocalName)
            {
                case "code":
                    Flush(current, paragraphs);
                    break;
                case "see" or "seealso" or "xref":
                    current.Append(child.IsEmpty || child.Value.Trim().Length == 0 ? ReferenceName(child) : child.Value);
                    break;
                case "paramref" or "typeparamref":
                    current.Append((string?)child.Attribute("name") ?? "");
                    break;
                case var name when BlockElements.Contains(name):
                    Flush(current, paragraphs);
                    AppendText(child, current, paragraphs);
                    Flush(current, paragraphs);
                    break;
                default:
                    // term, description, c, b, i, sup and the like: their text, kept apart from the next element's.
                    AppendText(child, current, paragraphs);
                    current.Append(' ');
                    break;
            }
        }
    }

    private static string ReferenceName(XElement reference) =>
        ((string?)reference.Attribute("langword") is { } word ? ReadableText(word) : null)
        ?? ((string?)reference.Attribute("cref") ?? (string?)reference.Attribute("href") ?? (string?)reference.Attribute("uid")) switch
        {
            { } target => ReadableName(target),
            null => "",
        };

    // The hardware-intrinsic documentation (a sixth of the text) is mostly C signatures and instruction encodings
    // ("__m128d _mm_cmpord_sd (__m128d a, __m128d b)", "A64: ADDP Vd.2S, Vn.2S, Vm.2S"): a paragraph counts as prose
    // when it has three words or more, starts with a letter, ends a sentence, and names no C function or _t type.
    private static bool IsProse(string paragraph) =>
        paragraph.Count(c => c == ' ') >= 2
        && char.IsLetter(paragraph[0])
        && paragraph[^1] is '.' or '!' or '?' or ':'
        && !CCode.IsMatch(paragraph);

    private static string ReadableText(string text) => RawReference.Replace(text, m => ReadableName(m.Value));

    private static void Flush(StringBuilder current, List<string> paragraphs)
    {
        var paragraph = Whitespace.Replace(current.ToString(), " ").Trim();
        current.Clear();
        if (paragraph.Length > 0)
            paragraphs.Add(paragraph);
    }

    private static List<string> CandidateRoots()
    {
        var roots = new List<string>();
        void Add(string? folder)
        {
            if (string.IsNullOrWhiteSpace(folder))
                return;
            var full = Path.GetFullPath(folder);
            if (!roots.Contains(full))
                roots.Add(full);
        }
        void AddHost(string? executable)
        {
            if (executable is null || !File.Exists(executable))
                return;
            // /usr/bin/dotnet is often a link into the real root (/usr/share/dotnet), where the packs are.
            var target = new FileInfo(executable).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? executable;
            Add(Path.GetDirectoryName(Path.GetFullPath(target)));
        }

        Add(Environment.GetEnvironmentVariable("DOTNET_ROOT"));
        var process = Environment.ProcessPath;
        if (process is not null && Path.GetFileNameWithoutExtension(process).Equals("dotnet", StringComparison.OrdinalIgnoreCase))
            AddHost(process);
        // The running runtime lives in <root>/shared/Microsoft.NETCore.App/<version>/.
        var runtime = new DirectoryInfo(RuntimeEnvironment.GetRuntimeDirectory());
        Add(runtime.Parent?.Parent?.Parent?.FullName);
        var executableName = OperatingSystem.IsWindows() ? "dotnet.exe" : "dotnet";
        foreach (var folder in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
            AddHost(Path.Combine(folder, executableName));
        if (OperatingSystem.IsWindows())
            Add(Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.ProgramFiles), "dotnet"));
        else
            foreach (var folder in new[] { "/usr/share/dotnet", "/usr/lib/dotnet", "/usr/local/share/dotnet", "/opt/dotnet" })
                Add(folder);
        Add(Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".dotnet"));
        return roots;
    }

    private static IEnumerable<PackFolder> Packs(string root)
    {
        var pack = Path.Combine(root, "packs", RefPack);
        if (!Directory.Exists(pack))
            yield break;
        foreach (var versionFolder in Directory.GetDirectories(pack))
        {
            var text = Path.GetFileName(versionFolder);
            var dash = text.IndexOf('-');
            if (!Version.TryParse(dash >= 0 ? text[..dash] : text, out var version))
                continue;
            var refFolder = Path.Combine(versionFolder, "ref");
            if (!Directory.Exists(refFolder))
                continue;
            foreach (var frameworkFolder in Directory.GetDirectories(refFolder))
            {
                var framework = Path.GetFileName(frameworkFolder);
                if (!framework.StartsWith("net", StringComparison.Ordinal)
                    || !Version.TryParse(framework[3..], out var frameworkVersion)
                    || Directory.GetFiles(frameworkFolder, "*.xml").Length == 0)
                    continue;
                yield return new PackFolder(frameworkFolder, version, dash >= 0 ? text[(dash + 1)..] : null, frameworkVersion);
            }
        }
    }

    private sealed record PackFolder(string Folder, Version Version, string? Prerelease, Version Framework);

    private sealed class Part(int budget)
    {
        public StringBuilder Text { get; } = new();

        public long Bytes { get; private set; }

        public int Paragraphs { get; private set; }

        public bool Full { get; private set; }

        public void Offer(string paragraph)
        {
            if (Full)
                return;
            var size = Encoding.UTF8.GetByteCount(paragraph) + 1;
            if (Bytes + size > budget)
            {
                Full = true;
                return;
            }
            Text.Append(paragraph).Append('\n');
            Bytes += size;
            Paragraphs++;
        }
    }
}
